"""``controlnet``: text-prompted colourisation with Stable Diffusion + a ControlNet (diffusers).

The grayscale photo (its L replicated into gray RGB) is the ControlNet's conditioning image, the
prompt says what the colours should be. The generated image's chroma is taken as ab (CIELAB of
the generated image, resized to L's size); the pipeline recombines it with the input's own L at
full resolution, so the structure always stays the photo's own.

Default weights (Hub ids; each overridable by a constructor kwarg or an environment variable):

- base model: ``stable-diffusion-v1-5/stable-diffusion-v1-5`` (``DEEPCOLOR_SD_MODEL``);
- ControlNet: ``latentcat/control_v1p_sd15_brightness`` (``DEEPCOLOR_CONTROLNET_MODEL``), a
  ControlNet trained on grayscale images (ioclab/grayscale_image_aesthetic_3M) to colourise them;
- with ``sdxl=True``: ``stabilityai/stable-diffusion-xl-base-1.0`` and
  ``OzzyGT/ControlNet-recolorXL`` (fp16 variant), a recolouring ControlNet for SDXL.

Any of them may be a local folder in diffusers layout instead. Construction is cheap: the
pipeline is loaded on first use (``load()``, ``predict``, ``training_loss`` or asking for the
parameters), so listing models never touches gigabytes of weights.

Saving: ``save_pretrained(folder)`` writes ``config.json`` (the base and ControlNet sources and
the sampling defaults) and, once a ControlNet has been loaded or fine-tuned, its weights in
``folder/controlnet`` (diffusers format). ``from_pretrained(folder)`` prefers that subfolder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..color import gray_rgb_from_l, join_lab, lab_to_rgb, rgb_to_lab
from ..errors import DeepColorError, InvalidCondition, ModelUnavailable
from ..registry import register_colorizer
from ..weights import hub_offline, offline_advice
from ._layers import default_weights_for, own_memory
from .base import Colorizer

DEFAULT_SD_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_CONTROLNET_MODEL = "latentcat/control_v1p_sd15_brightness"
DEFAULT_SDXL_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"
DEFAULT_SDXL_CONTROLNET_MODEL = "OzzyGT/ControlNet-recolorXL"
# The SDXL recolour ControlNet is published only as an fp16 variant.
_DEFAULT_VARIANTS = {DEFAULT_SDXL_CONTROLNET_MODEL: "fp16"}
SD_MODEL_ENV = "DEEPCOLOR_SD_MODEL"
CONTROLNET_MODEL_ENV = "DEEPCOLOR_CONTROLNET_MODEL"
#: ``controlnet_model`` value meaning "a fresh ControlNet copied from the base UNet" (training)
FROM_UNET = "unet"
#: what colourisation usually has to push away from
DEFAULT_NEGATIVE_PROMPT = (
    "black and white, grayscale, monochrome, sepia, desaturated, faded, low quality"
)
CONTROLNET_SUBFOLDER = "controlnet"
_SCHEDULERS = ("default", "unipc", "ddim", "dpm", "euler")
_DTYPES = {
    "auto": None,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def _is_local(spec: str) -> bool:
    return Path(spec).expanduser().is_dir()


def _check_folder(what: str, spec: str, env: str) -> None:
    """A spec written as a path must be an existing folder (not sent to the Hub as an id)."""
    looks_like_path = spec.startswith(("/", ".", "~")) or spec.count("/") > 1 or "\\" in spec
    if looks_like_path and not _is_local(spec):
        raise ModelUnavailable(
            f"the {what} folder {spec} does not exist; point {env} (or the model's config) at "
            f"a diffusers folder, or at a Hub id"
        )


def _unavailable(what: str, spec: str, env: str, exc: Exception) -> ModelUnavailable:
    """The error that says exactly what to download or set."""
    if _is_local(spec):
        return ModelUnavailable(
            f"the {what} folder {spec} could not be loaded ({type(exc).__name__}: {exc}); it must "
            f"be a diffusers folder (model_index.json or config.json with weights)"
        )
    return ModelUnavailable(
        f"the {what} {spec!r} is not in the local Hugging Face cache and cannot be downloaded "
        f"here ({type(exc).__name__}). On a machine with internet run `hf download {spec} "
        f"--local-dir FOLDER`, then set {env}=FOLDER (or pass it to the model)"
        f"{offline_advice()}."
    )


@register_colorizer(
    "controlnet",
    summary="Stable Diffusion + ControlNet, text-prompted (diffusers; SD 1.5 or SDXL)",
    needs=("prompt",),
    accepts=("negative_prompt", "steps", "guidance", "seed"),
    weights=(
        f"Hub: {DEFAULT_SD_MODEL} + {DEFAULT_CONTROLNET_MODEL} "
        f"(or local folders via {SD_MODEL_ENV} / {CONTROLNET_MODEL_ENV}); "
        "fine-tune with `accelerate launch -m train.controlnet`"
    ),
    default_weights=default_weights_for("controlnet"),
    trainable=True,
)
class ControlNetColorizer(Colorizer):
    """Stable Diffusion (1.x/2.x, or SDXL with ``sdxl=True``) + a ControlNet on the gray image.

    The module's parameters are the ControlNet's (the one part fine-tuning changes); the base
    UNet, VAE and text encoder(s) are frozen and kept outside the state dict.
    """

    size_multiple: ClassVar[int] = 8

    def __init__(
        self,
        working_size: int = 512,
        base_model: str | None = None,
        controlnet_model: str | None = None,
        sdxl: bool = False,
        steps: int = 20,
        guidance: float = 7.5,
        negative_prompt: str = DEFAULT_NEGATIVE_PROMPT,
        scheduler: str = "unipc",
        conditioning_scale: float = 1.0,
        variant: str | None = None,
        dtype: str = "auto",
    ) -> None:
        super().__init__(working_size=working_size)
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; choose from {', '.join(_DTYPES)}")
        if scheduler not in _SCHEDULERS:
            raise ValueError(
                f"unknown scheduler {scheduler!r}; choose from {', '.join(_SCHEDULERS)}"
            )
        self.base_model = base_model
        self.controlnet_model = controlnet_model
        self.sdxl = bool(sdxl)
        self.steps = int(steps)
        self.guidance = float(guidance)
        self.negative_prompt = negative_prompt
        self.scheduler_name = scheduler
        self.conditioning_scale = float(conditioning_scale)
        self.variant = variant
        self.dtype_name = dtype
        # Follows .to()/.half()/.cuda() so the lazily loaded parts land on the right device/dtype.
        self.register_buffer("_placement", torch.zeros(()), persistent=False)
        self._pipe = None  # the diffusers pipeline, once loaded
        self._loading = False

    # --- where the weights come from -----------------------------------------------------------
    def resolved_sources(self) -> tuple[str, str]:
        """(base model, ControlNet) as Hub ids or folders, after defaults and env variables."""
        base_default = DEFAULT_SDXL_MODEL if self.sdxl else DEFAULT_SD_MODEL
        cn_default = DEFAULT_SDXL_CONTROLNET_MODEL if self.sdxl else DEFAULT_CONTROLNET_MODEL
        base = self.base_model or os.environ.get(SD_MODEL_ENV) or base_default
        controlnet = self.controlnet_model or os.environ.get(CONTROLNET_MODEL_ENV) or cn_default
        return str(base), str(controlnet)

    @property
    def loaded(self) -> bool:
        return self._pipe is not None

    @property
    def pipe(self):
        """The diffusers pipeline (loads it on first access)."""
        self.load()
        return self._pipe

    def load(self) -> ControlNetColorizer:
        """Load the base pipeline and the ControlNet (once); raises ModelUnavailable offline."""
        if self._pipe is not None or self._loading:
            return self
        self._loading = True
        try:
            self._load()
        finally:
            self._loading = False
        return self

    def _load(self) -> None:
        from diffusers import ControlNetModel

        base, cn_spec = self.resolved_sources()
        _check_folder("Stable Diffusion base model", base, SD_MODEL_ENV)
        if cn_spec != FROM_UNET:
            _check_folder("ControlNet", cn_spec, CONTROLNET_MODEL_ENV)
        local_only = hub_offline()
        dtype = self._load_dtype()
        common: dict[str, Any] = {"dtype": dtype}
        if local_only:
            common["local_files_only"] = True
        pipeline_cls = self._pipeline_class()
        parts: dict[str, Any] = {}
        try:
            if cn_spec == FROM_UNET:
                from diffusers import UNet2DConditionModel

                # A fresh ControlNet: a copy of the base UNet's encoder, zero convs at 0.
                parts["unet"] = UNet2DConditionModel.from_pretrained(
                    base, subfolder="unet", **common
                )
        except (OSError, ValueError) as exc:
            raise _unavailable("Stable Diffusion base model", base, SD_MODEL_ENV, exc) from exc
        if cn_spec == FROM_UNET:
            controlnet = ControlNetModel.from_unet(parts["unet"])
            if dtype != torch.float32:
                controlnet = controlnet.to(dtype)
        else:
            variant = self.variant or (
                None if _is_local(cn_spec) else _DEFAULT_VARIANTS.get(cn_spec)
            )
            try:
                controlnet = ControlNetModel.from_pretrained(cn_spec, variant=variant, **common)
            except (OSError, ValueError) as exc:
                raise _unavailable("ControlNet", cn_spec, CONTROLNET_MODEL_ENV, exc) from exc
        if not self.sdxl:  # SD 1.x ships a safety checker; colourisation has no use for it
            parts.update(safety_checker=None, requires_safety_checker=False)
        try:
            pipe = pipeline_cls.from_pretrained(base, controlnet=controlnet, **parts, **common)
        except (OSError, ValueError) as exc:
            raise _unavailable("Stable Diffusion base model", base, SD_MODEL_ENV, exc) from exc
        pipe.scheduler = self._make_scheduler(pipe.scheduler)
        pipe.set_progress_bar_config(disable=True)
        for part in self._frozen_parts(pipe):
            part.requires_grad_(False)
            part.eval()
            own_memory(part)  # diffusers leaves the weights as views into the files
        own_memory(controlnet)
        pipe.to(self._placement.device)
        self._pipe = pipe
        # Registered as a submodule: parameters(), state_dict() and optimisers see the ControlNet.
        self.controlnet = controlnet.to(self._placement.device)

    def _load_dtype(self) -> torch.dtype:
        """An explicit .half()/.to(dtype) wins; else ``dtype``; "auto" = float16 on CUDA."""
        placed = self._placement.dtype
        if placed != torch.float32 or self.dtype_name == "float32":
            return placed
        if self.dtype_name == "auto":
            return torch.float16 if self._placement.device.type == "cuda" else torch.float32
        return _DTYPES[self.dtype_name]

    def _pipeline_class(self):
        if self.sdxl:
            from diffusers import StableDiffusionXLControlNetPipeline

            return StableDiffusionXLControlNetPipeline
        from diffusers import StableDiffusionControlNetPipeline

        return StableDiffusionControlNetPipeline

    def _make_scheduler(self, scheduler):
        from diffusers import (
            DDIMScheduler,
            DPMSolverMultistepScheduler,
            EulerDiscreteScheduler,
            UniPCMultistepScheduler,
        )

        choice = {
            "unipc": UniPCMultistepScheduler,
            "ddim": DDIMScheduler,
            "dpm": DPMSolverMultistepScheduler,
            "euler": EulerDiscreteScheduler,
        }.get(self.scheduler_name)
        return scheduler if choice is None else choice.from_config(scheduler.config)

    @staticmethod
    def _frozen_parts(pipe) -> list[torch.nn.Module]:
        names = ("unet", "vae", "text_encoder", "text_encoder_2")
        return [getattr(pipe, n) for n in names if getattr(pipe, n, None) is not None]

    # --- nn.Module plumbing -------------------------------------------------------------------
    def named_parameters(self, *args: Any, **kwargs: Any):
        # Asking for the parameters (optimisers, parameter counts) means the model is wanted.
        self.load()
        return super().named_parameters(*args, **kwargs)

    def state_dict(self, *args: Any, **kwargs: Any):
        self.load()  # the state is the ControlNet's weights, which exist once loaded
        return super().state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, *args: Any, **kwargs: Any):
        self.load()
        return super().load_state_dict(state_dict, *args, **kwargs)

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        if self._pipe is not None:  # the frozen parts live outside the module tree
            for part in self._frozen_parts(self._pipe):
                part._apply(fn)
        return self

    @property
    def device(self) -> torch.device:
        return self._placement.device

    # --- inference ----------------------------------------------------------------------------
    def forward(
        self,
        L: torch.Tensor,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int | None = 0,
        **conditions: Any,
    ) -> torch.Tensor:
        """Generate with the gray image as control and return its ab at ``L``'s size.

        Sampling is not differentiable (training goes through :meth:`training_loss`). ``seed``
        defaults to 0 so that results are reproducible; every image of a batch gets the same
        seed, so an image's colours do not depend on what else is in the batch.
        """
        if conditions:
            raise InvalidCondition(
                f"model 'controlnet' does not take {', '.join(sorted(conditions))}"
            )
        batch = L.shape[0]
        prompts = _as_prompts(prompt, batch, "prompt")
        negatives = _as_prompts(
            self.negative_prompt if negative_prompt is None else negative_prompt,
            batch,
            "negative_prompt",
        )
        steps = self.steps if steps is None else int(steps)
        guidance = self.guidance if guidance is None else float(guidance)
        if steps < 1:
            raise InvalidCondition(f"steps must be at least 1 (got {steps})")
        pipe = self.pipe
        height, width = (max(8, round(s / 8) * 8) for s in L.shape[-2:])
        control = gray_rgb_from_l(L.float())
        control = F.interpolate(control, size=(height, width), mode="bilinear", align_corners=False)
        generators = None
        if seed is not None:
            generators = [torch.Generator("cpu").manual_seed(int(seed)) for _ in range(batch)]
        kwargs: dict[str, Any] = {}
        if self.sdxl:
            kwargs["original_size"] = kwargs["target_size"] = (height, width)
        images = pipe(
            prompt=prompts,
            negative_prompt=negatives if guidance > 1 else None,
            image=control.to(self.device, pipe.unet.dtype),
            height=height,
            width=width,
            num_inference_steps=steps,
            guidance_scale=guidance,
            controlnet_conditioning_scale=self.conditioning_scale,
            generator=generators,
            output_type="pt",
            **kwargs,
        ).images
        ab = rgb_to_lab(images.float().clamp(0, 1))[:, 1:]
        if ab.shape[-2:] != L.shape[-2:]:
            ab = F.interpolate(ab, size=L.shape[-2:], mode="bilinear", align_corners=False)
        return ab.to(L.dtype)

    # --- training -----------------------------------------------------------------------------
    def training_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """ControlNet noise-prediction loss on ``L``/``ab`` (and optional ``caption``).

        Optional keys fix the randomness (for checks): ``noise`` (latent-shaped),
        ``timesteps`` (B,) long, ``generator`` (a torch.Generator for the VAE's sampling).
        """
        self.load()
        L, ab = batch["L"], batch["ab"]
        target_rgb = lab_to_rgb(join_lab(L.float(), ab.float())).clamp(0, 1)
        captions = batch.get("caption")
        if captions is None:
            captions = [""] * L.shape[0]
        return noise_prediction_loss(
            self._pipe,
            self.controlnet,
            target_rgb,
            gray_rgb_from_l(L.float()),
            list(captions),
            noise=batch.get("noise"),
            timesteps=batch.get("timesteps"),
            generator=batch.get("generator"),
        )

    # --- save / load --------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The constructor kwargs as saved in ``config.json``."""
        return {
            "working_size": self.working_size,
            "base_model": self.base_model,
            "controlnet_model": self.controlnet_model,
            "sdxl": self.sdxl,
            "steps": self.steps,
            "guidance": self.guidance,
            "negative_prompt": self.negative_prompt,
            "scheduler": self.scheduler_name,
            "conditioning_scale": self.conditioning_scale,
            "variant": self.variant,
            "dtype": self.dtype_name,
        }

    def _save_pretrained(self, save_directory: Path) -> None:
        save_directory = Path(save_directory)
        target = save_directory / CONTROLNET_SUBFOLDER
        config = self.config()
        source = self.controlnet_model
        if self._pipe is not None:
            if target.exists():
                shutil.rmtree(target)
            self.controlnet.save_pretrained(target)
        elif source and _is_local(source) and Path(source).resolve() != target.resolve():
            # Not loaded, but its ControlNet is a local folder (e.g. a fine-tuned one): keep it.
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(source, target)
        if (target / "config.json").is_file():
            # The subfolder is what from_pretrained loads; where it came from is only provenance.
            config["controlnet_model"] = None
            config["controlnet_source"] = source
        (save_directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))

    @classmethod
    def _from_pretrained(cls, *, model_id: str, **kwargs: Any) -> ControlNetColorizer:
        for key in ("revision", "cache_dir", "force_download", "local_files_only", "token"):
            kwargs.pop(key, None)
        kwargs.pop("map_location", None)
        kwargs.pop("strict", None)
        folder = Path(model_id)
        if not folder.is_dir():
            from ..weights import download_from_hub

            folder = download_from_hub(model_id, model_name=cls.name)
        subfolder = folder / CONTROLNET_SUBFOLDER
        if (subfolder / "config.json").is_file() and not kwargs.get("controlnet_model"):
            kwargs["controlnet_model"] = str(subfolder.resolve())
        return cls(**kwargs)


def _as_prompts(value: str | list[str] | None, batch: int, what: str) -> list[str]:
    if value is None:
        if what == "prompt":
            raise InvalidCondition("model 'controlnet' needs prompt (e.g. 'a colour photo of ...')")
        return [""] * batch
    if isinstance(value, str):
        return [value] * batch
    values = [str(v) for v in value]
    if len(values) != batch:
        raise InvalidCondition(f"{len(values)} {what}s given for a batch of {batch} images")
    return values


def encode_prompts(pipe, captions: list[str]) -> torch.Tensor:
    """CLIP text embeddings of ``captions`` as the UNet's cross-attention sees them (SD 1.x/2.x)."""
    tokens = pipe.tokenizer(
        captions,
        padding="max_length",
        max_length=pipe.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    encoder = pipe.text_encoder
    return encoder(tokens.input_ids.to(encoder.device))[0]


def noise_prediction_loss(
    pipe,
    controlnet: torch.nn.Module,
    target_rgb: torch.Tensor,
    control_rgb: torch.Tensor,
    captions: list[str],
    *,
    noise: torch.Tensor | None = None,
    timesteps: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    noise_scheduler=None,
) -> torch.Tensor:
    """The ControlNet training objective: predict the noise added to the colour image's latents.

    ``target_rgb`` and ``control_rgb`` are (B, 3, H, W) in [0, 1]; the frozen VAE encodes the
    target, the frozen text encoder the captions, and the frozen UNet, fed the ControlNet's
    residuals, predicts the noise (or v, as the scheduler says). Only ``controlnet`` learns.
    """
    if getattr(pipe, "text_encoder_2", None) is not None:
        raise DeepColorError(
            "ControlNet fine-tuning supports Stable Diffusion 1.x/2.x base models; SDXL "
            "training is not implemented"
        )
    vae, unet = pipe.vae, pipe.unet
    weight_dtype = unet.dtype
    device = unet.device
    if noise_scheduler is None:
        from diffusers import DDPMScheduler

        noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    with torch.no_grad():
        pixels = (target_rgb * 2 - 1).to(device, vae.dtype)
        latents = vae.encode(pixels).latent_dist.sample(generator=generator)
        latents = (latents * vae.config.scaling_factor).to(weight_dtype)
        text = encode_prompts(pipe, captions).to(weight_dtype)
    if noise is None:
        noise = torch.randn(latents.shape, generator=generator, dtype=latents.dtype).to(device)
    noise = noise.to(device, latents.dtype)
    if timesteps is None:
        steps = noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (latents.shape[0],), generator=generator)
    timesteps = timesteps.to(device).long()
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    control = control_rgb.to(device, _module_dtype(controlnet))
    down, mid = controlnet(
        noisy.to(_module_dtype(controlnet)),
        timesteps,
        encoder_hidden_states=text.to(_module_dtype(controlnet)),
        controlnet_cond=control,
        return_dict=False,
    )
    prediction = unet(
        noisy,
        timesteps,
        encoder_hidden_states=text,
        down_block_additional_residuals=[r.to(weight_dtype) for r in down],
        mid_block_additional_residual=mid.to(weight_dtype),
        return_dict=False,
    )[0]
    kind = noise_scheduler.config.prediction_type
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        raise DeepColorError(f"unsupported prediction type {kind!r} of the base model's scheduler")
    return F.mse_loss(prediction.float(), target.float())


def _module_dtype(module: torch.nn.Module) -> torch.dtype:
    inner = getattr(module, "module", module)  # DistributedDataParallel wraps the model
    for parameter in inner.parameters():
        return parameter.dtype
    return torch.float32
