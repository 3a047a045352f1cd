"""Training of every feed-forward colouriser (``accelerate launch -m train``).

The run knows nothing about any model: it builds one through the registry and minimises its
own ``training_loss(batch)``. The phases (accelerator, resume, logging, checkpoints, final save)
are :class:`train.skeleton.TrainingRun`'s; this module supplies the model, the data, the loss,
validation and ``RUN/final``.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import parse_args
from .errors import TrainingError
from .records import hardware, model_card
from .skeleton import TrainingRun, build_lr_scheduler, run_entry_point

__all__ = ["ColorizerTraining", "TrainingError", "build_lr_scheduler", "check_model", "main"]

SAVE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class LossModule(nn.Module):
    """Wraps a colouriser so that ``forward(batch)`` is its ``training_loss``.

    DistributedDataParallel only synchronises gradients for work done through ``forward``, so
    the loss must be computed there, not through a side method of the wrapped model.
    """

    def __init__(self, colorizer: nn.Module) -> None:
        super().__init__()
        self.colorizer = colorizer

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.colorizer.training_loss(batch)


def import_modules(names: Sequence[str]) -> None:
    """``--import_modules``: user modules that register their own colourisers."""
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise TrainingError(f"--import_modules: cannot import {name!r} ({exc})") from None


def check_model(name: str):
    """The registry entry of a model this loop can train (clear errors otherwise)."""
    from deepcolor.registry import colorizer_info

    info = colorizer_info(name)  # UnknownModel names the choices
    if not info.trainable:
        raise TrainingError(f"model {name!r} has nothing to train ({info.summary})")
    if "prompt" in info.needs:  # the data here has no prompts: diffusion has its own run
        raise TrainingError(
            f"model {name!r} is a diffusion model: train it with "
            "`accelerate launch -m train.controlnet ...`"
        )
    return info


def build_model(args):
    """``create_colorizer(--model, weights=--init_weights, **--model_kwargs)``."""
    from deepcolor.factory import create_colorizer
    from deepcolor.models.base import Colorizer

    try:
        model = create_colorizer(args.model, weights=args.init_weights, **args.model_kwargs)
    except TypeError as exc:
        raise TrainingError(f"--model_kwargs {args.model_kwargs}: {exc}") from None
    if type(model).training_loss is Colorizer.training_loss:
        raise TrainingError(f"model {args.model!r} defines no training_loss: nothing to train")
    if not any(p.requires_grad for p in model.parameters()):
        raise TrainingError(f"model {args.model!r} has no trainable parameters")
    return model


def save_final_weights(model: nn.Module, folder: Path, dtype: torch.dtype) -> None:
    """``save_pretrained`` of a CPU copy in ``dtype`` (frozen package parts left out)."""
    if folder.exists():
        shutil.rmtree(folder)
    final = copy.deepcopy(model).cpu().to(dtype=dtype)
    if hasattr(final, "save_package_weights"):
        final.save_package_weights = False  # frozen parts an installed package provides
    final.save_pretrained(str(folder))


class ColorizerTraining(TrainingRun):
    """Any registered colouriser through its own ``training_loss``."""

    entry_point = "accelerate launch -m train"

    def check(self) -> None:
        import_modules(self.args.import_modules)
        self.info = check_model(self.args.model)
        super().check()
        self.progress_label = f"train {self.args.model}"
        # conditions the data must provide (a model's exemplar); the rest come from the batch
        self.conditions = tuple(
            c for c in ("reference",) if c in self.info.needs or c in self.info.accepts
        )

    def build(self) -> None:
        from .data import augmentation_from_args, build_datasets

        args = self.args
        self.colorizer = build_model(args)
        reference = args.reference_source if "reference" in self.conditions else None
        with self.accelerator.main_process_first():  # the main process fills the cache first
            self.data = build_datasets(
                args, augmentation=augmentation_from_args(args), reference=reference
            )
        self.module = LossModule(self.colorizer)

    def compute_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        from .data import to_lab_batch

        return self.module(to_lab_batch(batch))

    def result_module(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.module).colorizer

    def run_facts(self) -> dict[str, Any]:
        colorizer = self.colorizer
        return {
            "model_class": f"{type(colorizer).__module__}.{type(colorizer).__name__}",
            "parameters": sum(p.numel() for p in colorizer.parameters()),
        }

    def validate(
        self, step: int, grid_path: Path | None
    ) -> tuple[dict[str, float], np.ndarray | None]:
        from .validation import validate

        # a sharded model's forward is collective: then every process validates alike
        if not (self.main or self.sharded) or not self.data.num_validation:
            return {}, None
        model = self.ema.module if self.ema is not None else self.result_module()
        return validate(
            model,
            self.data.validation,
            device=self.accelerator.device,
            batch_size=self.args.train_batch_size,
            seed=self.args.seed,
            conditions=self.conditions,
            num_grid_images=self.args.num_validation_images,
            grid_path=grid_path,
        )

    def save_final(self, folder: Path) -> None:
        args, step = self.args, self.state.global_step
        # FSDP / DeepSpeed hold shards: gather the full weights (collective) into a fresh model
        full_state = self.accelerator.get_state_dict(self.module) if self.sharded else None
        if not self.main:
            return
        if self.ema is not None:
            model = self.ema.module
        elif self.sharded:
            colorizer = self.colorizer
            model = type(colorizer)(**dict(getattr(colorizer, "_hub_mixin_config", None) or {}))
            prefix = "colorizer."
            model.load_state_dict({k.removeprefix(prefix): v for k, v in full_state.items()})
        else:
            model = self.result_module()
        save_final_weights(model, folder, SAVE_DTYPES[args.save_dtype])
        card = model_card(
            model=args.model,
            command=self.command,
            args=vars(args) | {"mixed_precision": self.accelerator.mixed_precision},
            steps=step,
            epochs=step / self.updates_per_epoch if self.updates_per_epoch else float("nan"),
            images_seen=step * self.per_step_images,
            wall_seconds=self.wall(),
            hardware_line=hardware(),
            num_processes=self.accelerator.num_processes,
            final_metrics=self.last_validation,
            num_train=self.data.num_train,
            num_validation=self.data.num_validation,
        )
        (folder / "README.md").write_text(card)
        self.accelerator.print(f"saved {folder} ({step} steps, {self.wall() / 60:.1f} min)")


def train(args, argv: Sequence[str] | None = None) -> Path:
    """Run training as configured by ``args`` (see :mod:`train.config`); returns ``RUN/final``."""
    return ColorizerTraining(args, argv).run()


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry: parse, train, turn DeepColor errors into one line on stderr (exit 2)."""
    return run_entry_point("train", parse_args, train, argv)
