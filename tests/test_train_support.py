"""Shared pieces of the training tests: tiny test-only models and tiny datasets on disk.

Two test-only colourisers, ``tiny-test`` (L only) and ``tiny-exemplar-test`` (needs a
reference), are registered only while :func:`tiny_models_registered` (or the ``isolated_run``
fixture) is active, so the global registry does not depend on which tests ran; a training
subprocess registers them with ``--import_modules tiny_models_worker``. The photos have a colour that follows their lightness
(bright = orange, dark = blue), so a 2-layer network learns them in a few steps.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from deepcolor.color import normalize_ab, normalize_l, rgb_to_lab
from deepcolor.models.base import Colorizer
from deepcolor.registry import registered_colorizer

HERE = Path(__file__).resolve().parent


class TinyColorizer(Colorizer):
    """Two 3x3 convolutions (no BatchNorm: 1- and 2-process runs must agree exactly)."""

    name = "tiny-test"

    def __init__(self, width: int = 8, working_size: int | None = None) -> None:
        super().__init__(working_size=working_size)
        self.body = nn.Sequential(
            nn.Conv2d(1 + self.extra_channels, width, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(width, 2, 3, padding=1),
        )

    extra_channels = 0

    def features(self, L: torch.Tensor, **conditions) -> torch.Tensor:
        return normalize_l(L)

    def forward(self, L: torch.Tensor, **conditions) -> torch.Tensor:
        return self.body(self.features(L, **conditions)) * 110.0

    def training_loss(self, batch) -> torch.Tensor:
        kwargs = {"reference": batch["reference"]} if "reference" in self.needs else {}
        return F.mse_loss(normalize_ab(self(batch["L"], **kwargs)), normalize_ab(batch["ab"]))


class TinyExemplarColorizer(TinyColorizer):
    """Adds the reference's mean ab as two constant input planes."""

    name = "tiny-exemplar-test"
    needs = ("reference",)
    extra_channels = 2

    def features(self, L: torch.Tensor, **conditions) -> torch.Tensor:
        reference = conditions["reference"]
        mean_ab = normalize_ab(rgb_to_lab(reference)[:, 1:].mean(dim=(2, 3), keepdim=True))
        return torch.cat([normalize_l(L), mean_ab.expand(-1, -1, *L.shape[-2:])], dim=1)


#: (registry name, class, needs) of the test-only models
TINY_MODELS = (
    ("tiny-test", TinyColorizer, ()),
    ("tiny-exemplar-test", TinyExemplarColorizer, ("reference",)),
)
TINY_SUMMARY = "test-only tiny model"


@contextmanager
def tiny_models_registered() -> Iterator[None]:
    """The tiny test-only models in the registry for the ``with`` block only."""
    with ExitStack() as stack:
        for name, cls, needs in TINY_MODELS:
            stack.enter_context(registered_colorizer(name, cls, summary=TINY_SUMMARY, needs=needs))
        yield


# ---------------------------------------------------------------------------------------------
# tiny data


def make_photos(n: int, size: int = 24, seed: int = 0, gray: bool = False) -> list[np.ndarray]:
    """``n`` uint8 photos whose colour follows their lightness (or gray ones)."""
    rng = np.random.default_rng(seed)
    photos = []
    for _ in range(n):
        coarse = rng.random((4, 4))
        v = np.asarray(
            Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR),
            dtype=np.float64,
        )
        v = v / 255.0 * 0.8 + 0.1
        warm = np.stack([v, v * 0.75, v * 0.45], -1)
        cool = np.stack([v * 0.45, v * 0.7, np.minimum(1, v * 1.4)], -1)
        rgb = np.where(v[..., None] > 0.5, warm, cool)
        if gray:
            rgb = np.repeat(v[..., None], 3, axis=-1)
        photos.append((rgb * 255 + 0.5).astype(np.uint8))
    return photos


def _dataset_dict(n_train: int, n_val: int, size: int, gray: bool, captions: bool):
    import datasets

    def split(n: int, seed: int):
        photos = make_photos(n, size=size, seed=seed, gray=gray)
        columns = {
            "image": [Image.fromarray(p) for p in photos],
            "label": [i % 2 for i in range(n)],
        }
        features = {"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])}
        if captions:
            columns["text"] = [f"photo {i}" for i in range(n)]
            features["text"] = datasets.Value("string")
        return datasets.Dataset.from_dict(columns, features=datasets.Features(features))

    parts = {"train": split(n_train, 1)}
    if n_val:
        parts["validation"] = split(n_val, 2)
    return datasets.DatasetDict(parts)


def write_hub_layout(
    folder: Path,
    n_train: int = 16,
    n_val: int = 4,
    size: int = 24,
    gray: bool = False,
    captions: bool = False,
) -> Path:
    """A dataset laid out like a Hub repository: README configs + data/*.parquet."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    splits = _dataset_dict(n_train, n_val, size, gray, captions)
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for name, ds in splits.items():
        ds.to_parquet(str(folder / "data" / f"{name}-00000-of-00001.parquet"))
        lines += [f"  - split: {name}", f"    path: data/{name}-00000-of-00001.parquet"]
    (folder / "README.md").write_text("\n".join([*lines, "---", "# tiny test photos", ""]))
    return folder


def write_save_to_disk(folder: Path, n_train: int = 16, n_val: int = 4, size: int = 24) -> Path:
    _dataset_dict(n_train, n_val, size, False, False).save_to_disk(str(folder))
    return folder


def write_imagefolder(folder: Path, n: int = 12, size: int = 24) -> Path:
    """``folder/train/<class>/<i>.png``: the layout ``load_dataset('imagefolder')`` reads."""
    for i, photo in enumerate(make_photos(n, size=size, seed=3)):
        cls = folder / "train" / ("a" if i % 2 else "b")
        cls.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo).save(cls / f"{i}.png")
    return folder


def tiny_args(dataset: Path, output_dir: Path, *extra: str, model: str = "tiny-test") -> list[str]:
    """The argv of a fast run (16 px, batch 4, no workers, no TensorBoard)."""
    return [
        "--model",
        model,
        "--dataset",
        str(dataset),
        "--output_dir",
        str(output_dir),
        "--resolution",
        "16",
        "--train_batch_size",
        "4",
        "--dataloader_num_workers",
        "0",
        "--report_to",
        "none",
        "--logging_steps",
        "1",
        "--learning_rate",
        "0.01",
        *extra,
    ]


def reset_accelerate() -> None:
    """Forget the process-wide accelerate state between in-process runs."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture
def isolated_run(tmp_path, monkeypatch):
    """A private datasets cache, one torch thread, fresh accelerate state and the tiny models
    registered for a test's runs.

    Tiny convolutions gain nothing from threads, which only add contention on a shared CPU.
    """
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    reset_accelerate()
    with tiny_models_registered():
        yield
    reset_accelerate()
    torch.set_num_threads(threads)


def read_config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def test_tiny_models_are_registered_only_inside_the_block_and_data_has_colour():
    from deepcolor.errors import UnknownModel
    from deepcolor.metrics import colourfulness
    from deepcolor.registry import colorizer_info

    with tiny_models_registered():
        assert colorizer_info("tiny-exemplar-test").needs == ("reference",)
    with pytest.raises(UnknownModel):
        colorizer_info("tiny-test")
    photos = make_photos(3)
    assert all(colourfulness(p) > 15 for p in photos)
    assert all(colourfulness(p) == 0 for p in make_photos(2, gray=True))
