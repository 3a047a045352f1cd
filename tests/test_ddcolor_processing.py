"""DDColor's photo path as its authors' code takes it, end to end: the data folder's
``ddcolor/pipeline/`` holds the original pipeline's output photos on known weights; the
``authors`` processing reproduces them within 1 level at every pixel. The default ``smooth``
processing is checked to differ (it is not the authors' path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import deltaE_ciede2000, rgb2lab
from test_ddcolor import formula_weights
from tiny_models import TINY_KWARGS

from deepcolor import ColorizationPipeline
from deepcolor.cli import main
from deepcolor.errors import InvalidCondition
from deepcolor.models.ddcolor import DDColorTinyColorizer

#: output file name -> evaluation photo (the data folder's pipeline/README.md)
PHOTOS = {
    "kodak24_kodim01": "eval/kodak24/kodim01.png",
    "kodak24_kodim05": "eval/kodak24/kodim05.png",
    "kodak24_kodim09": "eval/kodak24/kodim09.png",
    "mcmaster18_1": "eval/mcmaster18/1.png",
    "mcmaster18_10": "eval/mcmaster18/10.png",
}


@pytest.fixture(scope="module")
def reference_model(shared_data) -> DDColorTinyColorizer:
    """The tiny formula weights in float32 with the last layer's ``weight_u`` divided by 40,
    exactly as the reference photos were made."""
    folder = shared_data / "ddcolor"
    if not (folder / "pipeline" / "kodak24_kodim01.png").is_file():
        pytest.skip(f"{folder} holds no end-to-end DDColor reference photos")
    weights = formula_weights(folder, "tiny")
    weights["refine_net.0.0.weight_u"] = weights["refine_net.0.0.weight_u"] / 40
    return DDColorTinyColorizer.from_state_dict(weights)


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.slow
def test_authors_processing_reproduces_the_original_pipeline(reference_model, shared_data):
    authors = ColorizationPipeline(reference_model, device="cpu", processing="authors")
    smooth = ColorizationPipeline(reference_model, device="cpu")
    photos = [shared_data / source for source in PHOTOS.values()]
    for name, ours, default in zip(PHOTOS, authors(photos), smooth(photos), strict=True):
        expected = _read(shared_data / "ddcolor" / "pipeline" / f"{name}.png")
        assert ours.rgb.shape == expected.shape
        worst = np.abs(ours.rgb.astype(int) - expected.astype(int)).max()
        assert worst <= 1, f"{name}: {worst} levels from the original pipeline"
        # the default path is not the authors' (it smooths colour edges)
        assert np.abs(default.rgb.astype(int) - expected.astype(int)).max() > 20


def test_the_cli_takes_the_authors_processing(reference_model, shared_data, tmp_path):
    folder = tmp_path / "ddcolor-tiny"
    reference_model.save_pretrained(folder)
    photo = shared_data / PHOTOS["mcmaster18_10"]
    args = ["colorize", str(photo), "--model", "ddcolor-tiny", "--weights", str(folder)]
    assert main([*args, "-o", str(tmp_path / "authors"), "--processing", "authors"]) == 0
    assert main([*args, "-o", str(tmp_path / "smooth")]) == 0
    expected = _read(shared_data / "ddcolor" / "pipeline" / "mcmaster18_10.png")
    authors = _read(tmp_path / "authors" / "10.png")
    smooth = _read(tmp_path / "smooth" / "10.png")
    assert np.abs(authors.astype(int) - expected.astype(int)).max() <= 1
    difference = deltaE_ciede2000(rgb2lab(smooth / 255.0), rgb2lab(expected / 255.0))
    assert 0.3 < difference.mean() < 5.0  # different pixels, the same colours


def test_authors_processing_is_refused_for_models_without_one():
    with pytest.raises(InvalidCondition) as caught:
        ColorizationPipeline("gray", processing="authors")
    assert str(caught.value) == (
        "model 'gray' has no reproduction of its authors' processing; use processing 'smooth' "
        "(the authors' processing exists for the DDColor models)"
    )
    with pytest.raises(InvalidCondition, match="unknown processing 'sharp'; choose smooth or"):
        ColorizationPipeline("gray", processing="sharp")


def test_authors_steps_on_l_alone_resize_plainly_and_upsample_nearest():
    model = DDColorTinyColorizer(**TINY_KWARGS["ddcolor-tiny"])
    pipe = ColorizationPipeline(model, device="cpu", processing="authors")
    L = torch.rand(1, 1, 70, 45, generator=torch.Generator().manual_seed(0)) * 100
    ab = pipe.predict_ab(L)
    assert ab.shape == (1, 2, 70, 45)
    # nearest-neighbour upsampling: every full-size value is one of the working-size values
    small = pipe._predict_working(pipe.to_working_size(L), {})
    assert set(np.unique(ab.numpy())) <= set(np.unique(small.numpy()))


def test_the_compare_tab_says_which_processing_made_the_results():
    from deepcolor.ui.compare import describe_processing

    ddcolor = ColorizationPipeline(DDColorTinyColorizer(**TINY_KWARGS["ddcolor-tiny"]))
    gray = ColorizationPipeline("gray")
    assert describe_processing([gray]) == (
        "Processing: smooth (exact CIELAB, antialiased resizing, smooth colour upsampling)."
    )
    assert describe_processing([gray, ddcolor]) == (
        "Processing: smooth (exact CIELAB, antialiased resizing, smooth colour upsampling); "
        "ddcolor-tiny's own code resizes and converts differently: `deepcolor colorize "
        "--processing authors` gives its authors' pixels."
    )
    authors = ColorizationPipeline(ddcolor.model, processing="authors")
    assert describe_processing([authors]) == "Processing: authors."
