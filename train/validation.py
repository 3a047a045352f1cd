"""Periodic validation on the held-out split: loss, PSNR, CIEDE2000, colourfulness, a grid.

Runs on the main process with the unwrapped model, in float32, inside a forked RNG seeded the
same way every time: the figures are comparable across steps, and validating never changes the
random numbers training draws next (a resumed run stays identical to an uninterrupted one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from deepcolor import metrics
from deepcolor.color import gray_rgb_from_l, lab_to_rgb

from .data import to_lab_batch
from .records import save_grid


def uint8_images(rgb: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [0, 1] -> (B, H, W, 3) uint8."""
    return (rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def score_sums(truth: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """Summed PSNR, CIEDE2000 and colourfulness of uint8 (B, H, W, 3) outputs against their
    originals (divide by the count for means)."""
    sums = {"psnr": 0.0, "ciede2000": 0.0, "colourfulness": 0.0}
    for original, predicted in zip(truth, output, strict=True):
        sums["psnr"] += min(metrics.psnr(original, predicted), 100.0)  # identical would be inf
        sums["ciede2000"] += metrics.ciede2000(original, predicted)
        sums["colourfulness"] += metrics.colourfulness(predicted)
    return sums


@torch.no_grad()
def validate(
    model: Any,
    dataset: Dataset,
    *,
    device: torch.device,
    batch_size: int,
    seed: int,
    conditions: tuple[str, ...] = (),
    num_grid_images: int = 8,
    grid_path: Path | None = None,
) -> tuple[dict[str, float], np.ndarray | None]:
    """Mean loss and image metrics of ``model`` on ``dataset``; saves a grid if asked.

    The grid's rows are the gray input, the prediction and the original.
    """
    if len(dataset) == 0:
        return {}, None
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {"loss": 0.0, "psnr": 0.0, "ciede2000": 0.0, "colourfulness": 0.0}
    count, grid_rows = 0, None
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for batch in loader:
                batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}
                lab = to_lab_batch(batch)
                n = lab["L"].shape[0]
                totals["loss"] += float(model.training_loss(lab)) * n
                given = {c: lab[c] for c in conditions if c in lab}
                ab = model.predict(lab["L"], **given).float()
                rgb = lab_to_rgb(torch.cat([lab["L"], ab], dim=1))
                truth = batch["rgb"].permute(0, 2, 3, 1).cpu().numpy()
                for key, value in score_sums(truth, uint8_images(rgb)).items():
                    totals[key] += value
                if grid_rows is None:
                    k = min(num_grid_images, n)
                    grid_rows = [
                        gray_rgb_from_l(lab["L"][:k]),
                        rgb[:k],
                        batch["rgb"][:k].float() / 255.0,
                    ]
                count += n
    finally:
        model.train(was_training)
    result = {key: value / count for key, value in totals.items()}
    grid = save_grid(grid_rows, grid_path) if grid_path is not None and grid_rows else None
    return result, grid
