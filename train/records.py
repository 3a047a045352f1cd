"""What a run leaves in its folder besides checkpoints: config.json, metrics.csv, grids, card.

Only the main process calls these.
"""

from __future__ import annotations

import csv
import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

METRIC_FIELDS = (
    "step",
    "epoch",
    "split",
    "loss",
    "lr",
    "images_per_s",
    "psnr",
    "ciede2000",
    "colourfulness",
    "wall_s",
)


class MetricsLog:
    """``RUN/metrics.csv``: one row per logged training window or validation.

    ``split`` is ``train`` (``loss`` is the mean over the window) or ``validation``.
    On resume, rows after the checkpoint's step are dropped: they are about to be redone.
    """

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = Path(path)
        rows: list[dict[str, str]] = []
        if resume_step is not None and self.path.is_file():
            with self.path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
            writer.writeheader()
            writer.writerows(rows)

    def write(self, **row: Any) -> None:
        clean = {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=METRIC_FIELDS).writerow(clean)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.csv as dicts with numbers parsed (empty cells become None)."""
    out = []
    with Path(path).open(newline="") as f:
        for row in csv.DictReader(f):
            parsed: dict[str, Any] = {}
            for key, value in row.items():
                if key == "split":
                    parsed[key] = value
                elif value in ("", None):
                    parsed[key] = None
                else:
                    parsed[key] = float(value)
            out.append(parsed)
    return out


def hardware() -> str:
    """A one-line description of the machine this process runs on."""
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    cpu = platform.processor() or platform.machine()
    return f"CPU ({cpu}, {os.cpu_count()} cores)"


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


def save_grid(rows: Sequence[torch.Tensor], path: Path) -> np.ndarray:
    """Save rows of images (each ``(N, 3, H, W)`` in [0, 1]) as one PNG; returns HxWx3 uint8."""
    from torchvision.utils import make_grid

    stacked = torch.cat([r.float().cpu().clamp(0, 1) for r in rows])
    grid = make_grid(stacked, nrow=rows[0].shape[0], padding=2, pad_value=1.0)
    array = (grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return array


def model_card(
    *,
    model: str,
    command: str,
    args: dict[str, Any],
    steps: int,
    epochs: float,
    images_seen: int,
    wall_seconds: float,
    hardware_line: str,
    num_processes: int,
    final_metrics: dict[str, float] | None,
    num_train: int | None,
    num_validation: int,
) -> str:
    """The README.md of ``RUN/final``: what was trained, on what, how, and how well."""
    metrics = final_metrics or {}
    lines = [
        "---",
        "library_name: deepcolor",
        "tags: [colorization, deepcolor]",
        "---",
        f"# DeepColor `{model}`, trained with `train/`",
        "",
        "## Use",
        "```bash",
        f"deepcolor colorize PHOTO.jpg --model {model} --weights THIS_FOLDER",
        "```",
        "",
        "## Data",
        f"- dataset: `{args['dataset']}` (split `{args['train_split']}`; its README gives "
        "the terms of use)",
        f"- training photos: {num_train if num_train is not None else 'streamed'}; "
        f"validation photos: {num_validation}",
        f"- resolution {args['resolution']} px, random crop {args['random_crop']} "
        f"(scale {args['crop_scale']}), flip {args['hflip']}, rotation {args['rotation']}, "
        f"zoom {args['zoom']}, shear {args['shear']}, "
        f"min colourfulness {args['min_colourfulness']}",
        "",
        "## Training",
        "```bash",
        command,
        "```",
        f"- optimiser steps: {steps} ({epochs:.2f} epochs, {images_seen} images seen)",
        f"- global batch: {args['train_batch_size']} x {num_processes} process(es) x "
        f"{args['gradient_accumulation_steps']} accumulation",
        f"- learning rate {args['learning_rate']} ({args['lr_scheduler']}, "
        f"{args['lr_warmup_steps']} warm-up steps), weight decay {args['weight_decay']}, "
        f"EMA {args['ema_decay']}, mixed precision {args['mixed_precision']}",
        f"- wall time: {wall_seconds / 60:.1f} min on {hardware_line}",
        f"- weights saved as {args['save_dtype']}",
        "",
        "## Validation (held-out split, at the end of training)",
    ]
    if metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" for k, v in metrics.items()]
    else:
        lines.append("No validation data.")
    return "\n".join(lines) + "\n"
