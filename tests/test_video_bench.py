"""The video benchmark's clip recipe: its known motion gives exact correspondences, so the
flicker measure of a true clip is small, and wrong correspondences would show."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "video_benchmark", ROOT / "bench" / "video_benchmark.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _photos(count=3, size=(72, 128)) -> list[np.ndarray]:
    """Smooth random colour photos (landscape)."""
    import cv2

    rng = np.random.default_rng(1)
    return [
        cv2.resize(
            rng.integers(0, 256, (size[0] // 8, size[1] // 8, 3), dtype=np.uint8),
            (size[1], size[0]),
            interpolation=cv2.INTER_CUBIC,
        )
        for _ in range(count)
    ]


@pytest.mark.parametrize("kinds", [("pan", "zoom"), ("object", "pan+zoom")])
def test_true_clip_flicker_is_small_along_the_known_motion(bench, kinds):
    rng = np.random.default_rng(0)
    clip, cut = bench.make_clip(_photos(), kinds, (96, 54), 12, rng)
    assert len(clip) == 24 and cut == 12
    maps = bench.correspondences(clip, cut)
    assert maps[0] is None and maps[cut] is None and all(m is not None for m in maps[1:cut])
    truth = [f.rgb for f in clip]
    along_motion = bench.flicker(truth, maps)
    # the same frames compared pixel by pixel (no motion): a large change
    still = [(np.meshgrid(np.arange(96, dtype=np.float32), np.arange(54, dtype=np.float32)))]
    standing = [None if m is None else (*still[0], m[2]) for m in maps]
    assert along_motion < 1.0
    assert bench.flicker(truth, standing) > 3 * along_motion
    if "object" in kinds:
        assert clip[0].layer.any() and not np.array_equal(clip[0].layer, clip[11].layer)


def test_fade_clips_fade_to_and_from_black(bench):
    rng = np.random.default_rng(0)
    clip, _ = bench.make_clip(_photos(), ("pan", "zoom"), (96, 54), 20, rng)
    out, fading = bench.fade(clip, out=True)
    assert fading == range(len(clip) - bench.FADE_FRAMES, len(clip))
    assert out[-1].rgb.max() == 0 and out[fading.start].rgb.mean() < clip[fading.start].rgb.mean()
    assert all(
        np.array_equal(a.rgb, b.rgb) for a, b in zip(out[: fading.start], clip, strict=False)
    )
    into, fading_in = bench.fade(clip, out=False)
    assert fading_in == range(bench.FADE_FRAMES) and into[0].rgb.max() == 0
    assert np.array_equal(into[bench.FADE_FRAMES].rgb, clip[bench.FADE_FRAMES].rgb)
