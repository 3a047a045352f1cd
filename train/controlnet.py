"""ControlNet fine-tuning for the ``controlnet`` colouriser (``accelerate launch -m train.controlnet``).

The ControlNet learns to steer a frozen Stable Diffusion towards the colours of real photos:

- conditioning: the photo's gray version (its CIELAB L replicated into gray RGB);
- target: the colour photo itself, through the frozen VAE, with the usual noise-prediction
  objective (:func:`deepcolor.models.controlnet.noise_prediction_loss`);
- text: a caption column, or a template such as ``"a colour photo of {label}"``, with a share of
  empty prompts (``--empty_prompt_fraction``) so the model also colourises without a prompt;
- only the ControlNet trains: it starts as a copy of the base UNet's encoder
  (``--controlnet_model unet``, the default) or from an existing ControlNet (Hub id or folder);
- data: any Hub id or local folder; ``--streaming`` reads a large Hub dataset as it trains
  instead of downloading it whole (e.g. ``--dataset ioclab/grayscale_image_aesthetic_3M
  --image_column image --caption_column text --streaming --max_train_steps 5000``).

The phases (accelerator, data loader, resume, logging, checkpoints, validation between steps,
final save) are :class:`train.skeleton.TrainingRun`'s, shared with ``-m train``; this module adds
the diffusion step (:meth:`ControlNetTraining.compute_loss`), sampling-based validation and the
``RUN/final`` of the ``controlnet`` model
(``deepcolor colorize --model controlnet --weights RUN/final ...``).

Every random draw of a step (VAE sampling, noise, timesteps, empty prompts) comes from a
generator seeded by (seed, step, process), and the data order by (seed, epoch), so a resumed run
repeats exactly what an uninterrupted one would have done.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import add_shared_arguments, check_shared_args, entry_point_parser
from .errors import TrainingError
from .skeleton import TrainingRun, run_entry_point

# ---------------------------------------------------------------------------------------------
# arguments


def build_parser() -> argparse.ArgumentParser:
    p = entry_point_parser(
        "train.controlnet",
        "Fine-tune a ControlNet that colourises grayscale photos with Stable Diffusion.",
    )
    g = p.add_argument_group("models")
    g.add_argument(
        "--base_model",
        default=None,
        help="Stable Diffusion 1.x/2.x base (Hub id or diffusers folder); default: "
        "$DEEPCOLOR_SD_MODEL or stable-diffusion-v1-5/stable-diffusion-v1-5",
    )
    g.add_argument(
        "--controlnet_model",
        default="unet",
        help="'unet' (default): a new ControlNet copied from the base UNet; or an existing "
        "ControlNet to continue from (Hub id or folder)",
    )
    g.add_argument("--gradient_checkpointing", action="store_true")
    groups = add_shared_arguments(p)
    g = groups["data"]
    g.add_argument(
        "--caption_template",
        default=None,
        help="prompt built from each row, e.g. 'a colour photo of {label}' ({label} is the "
        "label's name); used when there is no --caption_column",
    )
    g.add_argument(
        "--empty_prompt_fraction",
        type=float,
        default=0.1,
        help="share of training prompts replaced by '' (so prompt-free colourisation works)",
    )
    g = groups["run"]
    g.add_argument("--validation_prompt", default=None, help="default: each photo's caption")
    g.add_argument("--validation_inference_steps", type=int, default=20)
    p.set_defaults(
        resolution=512,
        max_validation_samples=64,
        dataloader_num_workers=0,
        train_batch_size=4,
        learning_rate=1e-5,
        weight_decay=1e-2,
        ddp_find_unused_parameters=False,
        validation_steps=100,
        num_validation_images=4,
        report_to="none",
        tracker_project_name="deepcolor-controlnet",
    )
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = check_shared_args(build_parser().parse_args(argv))
    if args.resolution % 8:
        raise TrainingError(f"--resolution must be a multiple of 8 (got {args.resolution})")
    if not 0.0 <= args.empty_prompt_fraction <= 1.0:
        raise TrainingError("--empty_prompt_fraction must lie in [0, 1]")
    if args.validation_inference_steps < 1:
        raise TrainingError("--validation_inference_steps must be at least 1")
    if args.caption_template is not None and "{" in args.caption_template:
        try:
            args.caption_template.format(label="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise TrainingError(
                f"--caption_template {args.caption_template!r}: only {{label}} may be used ({exc})"
            ) from None
    return args


# ---------------------------------------------------------------------------------------------
# the run


def _step_generator(seed: int, step: int, process: int, micro: int) -> torch.Generator:
    """The generator of one micro-batch's random draws (same on a resumed run)."""
    mixed = (seed * 1_000_003 + step * 1_009 + process * 101 + micro) % (2**63 - 1)
    return torch.Generator().manual_seed(mixed)


def drop_prompts(captions: Sequence[str], fraction: float, generator: torch.Generator) -> list:
    """Each caption replaced by ``""`` with probability ``fraction`` (prompt-free training)."""
    draws = torch.rand(len(captions), generator=generator).tolist()
    return ["" if d < fraction else text for d, text in zip(draws, captions, strict=True)]


class ControlNetTraining(TrainingRun):
    """A ControlNet on a frozen Stable Diffusion, learning to colourise gray photos."""

    entry_point = "accelerate launch -m train.controlnet"
    validate_at_start = False  # sampling is slow, and step 0 is the starting ControlNet
    progress_label = "controlnet"

    def build(self) -> None:
        from .data import Augmentation, build_datasets

        args = self.args
        # The data first: a wrong column or an empty split is reported before any model loads.
        augmentation = Augmentation(
            resolution=args.resolution, random_crop=args.random_crop, hflip=args.hflip
        )
        with self.accelerator.main_process_first():  # the main process fills the cache first
            self.data = build_datasets(
                args,
                augmentation=augmentation,
                caption_template=args.caption_template,
                always_caption=True,
            )
        self.model = self.build_model()
        self.module = self.model.controlnet

    def build_model(self):
        """The ``controlnet`` colouriser: frozen parts in the mixed precision, ControlNet float32."""
        from diffusers import DDPMScheduler

        from deepcolor.models.controlnet import ControlNetColorizer

        args, accelerator = self.args, self.accelerator
        model = ControlNetColorizer(
            working_size=args.resolution,
            base_model=args.base_model,
            controlnet_model=args.controlnet_model,
            steps=args.validation_inference_steps,
            dtype="float32",  # the trained ControlNet stays float32; the frozen parts follow
        )
        model.load()
        if getattr(model.pipe, "text_encoder_2", None) is not None:
            raise TrainingError("--base_model: SDXL fine-tuning is not supported; use SD 1.x/2.x")
        weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(
            accelerator.mixed_precision, torch.float32
        )
        model.to(accelerator.device)
        pipe = model.pipe
        if weight_dtype != torch.float32:  # the frozen parts only run forward: half precision
            for part in (pipe.unet, pipe.vae, pipe.text_encoder):
                part.to(dtype=weight_dtype)
        model.controlnet.train()
        if args.gradient_checkpointing:
            model.controlnet.enable_gradient_checkpointing()
            pipe.unet.enable_gradient_checkpointing()
        self.noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        self.sources = model.resolved_sources()  # (base model, ControlNet initialisation)
        return model

    def compute_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """The noise-prediction loss with the gray photo as the control image."""
        from deepcolor.color import gray_rgb_from_l, rgb_to_lab
        from deepcolor.models.controlnet import noise_prediction_loss

        args, accelerator = self.args, self.accelerator
        generator = _step_generator(
            args.seed, self.state.global_step, accelerator.process_index, self.micro_batch
        )
        rgb = batch["rgb"].float() / 255.0
        control = gray_rgb_from_l(rgb_to_lab(rgb)[:, :1])
        captions = drop_prompts(list(batch["caption"]), args.empty_prompt_fraction, generator)
        with accelerator.autocast():
            return noise_prediction_loss(
                self.model.pipe,
                self.module,
                rgb,
                control,
                captions,
                generator=generator,
                noise_scheduler=self.noise_scheduler,
            )

    def result_module(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.module)

    def run_facts(self) -> dict[str, Any]:
        base, init = self.sources
        return {
            "base_model": base,
            "controlnet_init": init,
            "trainable_parameters": sum(p.numel() for p in self.result_module().parameters()),
        }

    @torch.no_grad()
    def validate(
        self, step: int, grid_path: Path | None
    ) -> tuple[dict[str, float], np.ndarray | None]:
        """Colourise the first validation photos; a grid (gray, colourised, original)."""
        from deepcolor.color import gray_rgb_from_l, join_lab, lab_to_rgb

        from .data import to_lab_batch
        from .records import save_grid
        from .validation import score_sums, uint8_images

        args, dataset = self.args, self.data.validation
        count = min(args.num_validation_images, len(dataset))
        if not self.main or count == 0:
            return {}, None
        items = [dataset[i] for i in range(count)]
        rgb = torch.stack([item["rgb"] for item in items])
        lab = to_lab_batch({"rgb": rgb})
        prompts = [args.validation_prompt or item.get("caption", "") for item in items]
        ab = self.sample(lab["L"].to(self.accelerator.device), prompts)
        output = lab_to_rgb(join_lab(lab["L"], ab.float().cpu()))
        grid = save_grid([gray_rgb_from_l(lab["L"]), output, rgb.float() / 255.0], grid_path)
        sums = score_sums(rgb.permute(0, 2, 3, 1).numpy(), uint8_images(output))
        return {key: value / count for key, value in sums.items()}, grid

    def sample(self, L: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """ab of the current ControlNet, sampled as inference does."""
        pipe, trained = self.model.pipe, self.model.controlnet
        was_training = trained.training
        # The sampler runs in one precision, with a plain copy of the ControlNet: accelerate's
        # mixed-precision wrapper on the trained one returns float32 whatever the frozen parts use.
        snapshot = type(trained).from_config(trained.config)
        snapshot.load_state_dict(trained.state_dict())
        pipe.controlnet = snapshot.to(pipe.unet.device, pipe.unet.dtype).eval()
        try:
            return self.model.predict(
                L, prompt=prompts, steps=self.args.validation_inference_steps, seed=self.args.seed
            )
        finally:
            pipe.controlnet = trained
            trained.train(was_training)

    def save_final(self, folder: Path) -> None:
        if not self.main:
            return
        trained = self.result_module()
        if any(p.dtype != torch.float32 for p in trained.parameters()):
            trained.to(torch.float32)
        base, init = self.sources
        self.model.base_model = base  # the resolved source: RUN/final loads the same base anywhere
        self.model.save_pretrained(folder)
        (folder / "README.md").write_text(self.model_card())
        self.accelerator.print(f"saved {folder}")

    def model_card(self) -> str:
        """RUN/final/README.md: what this ControlNet is and how it was trained."""
        args, (base, init) = self.args, self.sources
        data = "streamed" if args.streaming else f"{self.data.num_train} photos"
        lines = [
            "---",
            "library_name: deepcolor",
            "tags: [colorization, controlnet, stable-diffusion]",
            *([] if Path(base).is_dir() else [f"base_model: {base}"]),
            "---",
            "# DeepColor `controlnet`: a fine-tuned colourisation ControlNet",
            "",
            f"- base model (frozen): `{base}`",
            f"- ControlNet initialised from: `{init}`",
            f"- dataset: `{args.dataset}` ({data}), {args.resolution} px, "
            f"{self.state.global_step} optimiser steps, batch {args.train_batch_size} per "
            f"process, learning rate {args.learning_rate}",
            f"- prompts: {_prompt_source(args)}; empty prompts {args.empty_prompt_fraction:.0%}",
            "",
            "Use: `deepcolor colorize PHOTO -o OUT --model controlnet --weights THIS_FOLDER "
            '--prompt "a colour photo of ..."`',
            "",
            f"Trained with: `{self.command}`",
            "",
        ]
        return "\n".join(lines)


def _prompt_source(args) -> str:
    if args.caption_column:
        return f"column `{args.caption_column}`"
    if args.caption_template:
        return f"template `{args.caption_template}`"
    return "none (empty prompts)"


def train(args, argv: Sequence[str] | None = None) -> Path:
    """Run the fine-tuning described by ``args``; returns the ``RUN/final`` folder."""
    return ControlNetTraining(args, argv).run()


def main(argv: Sequence[str] | None = None) -> int:
    return run_entry_point("train.controlnet", parse_args, train, argv)


if __name__ == "__main__":
    sys.exit(main())
