"""A tiny Stable Diffusion + ControlNet pipeline built from configs, for offline CPU tests.

Nothing is downloaded: the UNet, VAE, CLIP text model, tokenizer (a character-level CLIP BPE
vocabulary written here) and scheduler are created from small configs with a fixed seed and
saved with diffusers' ``save_pretrained``. The folder has the layout of a Hub repository such as
``stable-diffusion-v1-5/stable-diffusion-v1-5`` plus a ``controlnet/`` subfolder (a ControlNet
initialised from the tiny UNet), so the ``controlnet`` model and ``train.controlnet`` load it
through their real code paths.

>>> folder = build_tiny_pipeline(tmp_path / "tiny-sd")           # doctest: +SKIP
>>> model = ControlNetColorizer(**tiny_colorizer_kwargs(folder))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

#: tokens per prompt, as in CLIP (the 16-wide text encoder costs next to nothing anyway)
MAX_TOKENS = 77
#: latent-space downsampling of the tiny VAE (4 blocks, like Stable Diffusion's)
VAE_SCALE = 8


def _tiny_tokenizer():
    """A CLIP tokenizer over single printable characters (no merges): real code path, tiny vocab."""
    from transformers import CLIPTokenizer

    chars = [chr(code) for code in range(33, 127)]
    vocab: dict[str, int] = {}
    for suffix in ("", "</w>"):
        for char in chars:
            vocab[char + suffix] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=MAX_TOKENS)


def build_tiny_pipeline(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny SD 1.x-layout pipeline (with ``controlnet/``) to ``folder``; returns it.

    Deterministic: the same seed gives bit-identical weights.
    """
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        DDIMScheduler,
        StableDiffusionControlNetPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    tokenizer = _tiny_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        norm_num_groups=4,
        latent_channels=4,
        sample_size=64,
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=MAX_TOKENS,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
    )
    torch.manual_seed(seed + 3)
    # Small conditioning embedding with three stride-2 steps, matching the VAE's factor 8.
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 8, 8, 16))
    pipe = StableDiffusionControlNetPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        controlnet=controlnet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder


def tiny_colorizer_kwargs(folder: str | Path, **overrides: Any) -> dict[str, Any]:
    """Constructor kwargs of the ``controlnet`` model for the tiny pipeline in ``folder``."""
    folder = Path(folder)
    kwargs: dict[str, Any] = {
        "base_model": str(folder),
        "controlnet_model": str(folder / "controlnet"),
        "working_size": 64,
        "steps": 2,
    }
    kwargs.update(overrides)
    return kwargs
