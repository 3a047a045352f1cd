import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import rgb2lab

from deepcolor import ColorizationPipeline, create_colorizer
from deepcolor.errors import DeviceUnavailable, InvalidCondition
from deepcolor.images import load_image
from deepcolor.models.base import Colorizer
from deepcolor.pipeline import (
    iter_image_files,
    lightness,
    recombine,
    reference_tensor,
    resolve_device,
    resolve_dtype,
)


class _SpyModel(Colorizer):
    """Records the L it receives; returns a colour that depends on position."""

    name = "spy"
    accepts = ("hints", "strength")

    def __init__(self, working_size=32):
        super().__init__(working_size=working_size)
        self.seen = []

    def forward(self, L, hints=None, strength=1.0):
        self.seen.append((tuple(L.shape), None if hints is None else hints[1].sum().item()))
        ramp = torch.linspace(-40, 40, L.shape[-1], dtype=L.dtype, device=L.device)
        ab = torch.stack([ramp.expand(L.shape[-2], -1), -ramp.expand(L.shape[-2], -1)])
        return strength * ab.expand(L.shape[0], -1, -1, -1)


def _photo(h=97, w=131, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((h, w, 3)) * 255).astype(np.uint8)


def test_output_keeps_size_and_luminance():
    photo = np.clip(_photo(), 40, 215).astype(np.uint8)  # mid-tones: moderate ab stays in gamut
    for model, conditions in ((_SpyModel(), {"strength": 0.25}), (create_colorizer("gray"), {})):
        result = ColorizationPipeline(model)(photo, **conditions)
        assert result.rgb.shape == photo.shape and result.rgb.dtype == np.uint8
        L_in = rgb2lab(photo / 255.0)[..., 0]
        L_out = rgb2lab(result.rgb / 255.0)[..., 0]
        assert np.abs(L_out - L_in).max() < 0.5
        assert np.allclose(result.L, L_in, atol=1e-6)
        assert result.original is not None  # a colour input is kept as ground truth


def test_model_sees_working_size_and_colour_is_upsampled():
    spy = _SpyModel(working_size=32)
    result = ColorizationPipeline(spy)(_photo(64, 200))
    assert spy.seen[0][0] == (1, 1, 32, 32)
    assert result.ab.shape == (64, 200, 2)
    assert result.ab[0, 0, 0] < -35 and result.ab[0, -1, 0] > 35  # ramp stretched to full width


def test_batching_groups_images_by_batch_size():
    spy = _SpyModel(working_size=16)
    pipe = ColorizationPipeline(spy, batch_size=2)
    results = pipe([_photo(20, 30, s) for s in range(5)])
    assert len(results) == 5
    assert [s[0][0] for s in spy.seen] == [2, 2, 1]


def test_l_in_memory_takes_the_same_path_as_a_photo():
    photo = _photo(40, 56)
    pipe = ColorizationPipeline(_SpyModel(working_size=16))
    result = pipe(photo, strength=0.5)
    L = lightness(load_image(photo))
    ab = pipe.predict_ab(L, strength=0.5)
    np.testing.assert_array_equal(ab[0].permute(1, 2, 0).numpy(), result.ab)
    np.testing.assert_array_equal(recombine(L, ab), result.rgb)
    reference = reference_tensor(photo)
    assert reference.shape == (1, 3, 40, 56) and reference.dtype == torch.float32
    assert torch.equal(reference_tensor(reference[0]), reference)


@pytest.mark.parametrize("count", [1, 3])
def test_non_finite_colours_are_refused_alone_and_in_a_batch(count):
    spy = _SpyModel(working_size=16)
    pipe = ColorizationPipeline(spy, batch_size=4)
    with pytest.raises(RuntimeError, match="non-finite"):
        pipe([_photo(20, 30, s) for s in range(count)], strength=float("nan"))
    assert [s[0][0] for s in spy.seen] == [count]  # the batch went through the model at once


def test_full_resolution_models_get_full_size():
    result = ColorizationPipeline("gray")(_photo(33, 47))
    assert result.rgb.shape == (33, 47, 3)
    assert np.abs(result.ab).max() == 0


def test_conditions_reach_the_model_and_are_checked():
    spy = _SpyModel()
    pipe = ColorizationPipeline(spy)
    weak = pipe(_photo(), strength=0.1)
    assert np.abs(weak.ab).max() < 5
    with pytest.raises(InvalidCondition, match="does not take prompt"):
        pipe(_photo(), prompt="a red car")


def test_point_hints_are_rasterised_at_working_size():
    spy = _SpyModel(working_size=32)
    ColorizationPipeline(spy)(_photo(), hints=[(0.5, 0.5, 20.0, -10.0, 3), (0.1, 0.9, 0, 0, 1)])
    assert spy.seen[-1][1] == 9 + 1  # mask pixels: a 3x3 patch and a 1x1 patch
    with pytest.raises(InvalidCondition, match="outside the image"):
        ColorizationPipeline(spy)(_photo(), hints=[(1.5, 0.5, 0, 0, 3)])
    with pytest.raises(InvalidCondition, match="one list of hints per image"):
        ColorizationPipeline(spy)([_photo(), _photo()], hints=[(0.5, 0.5, 0, 0, 3)])


def test_alpha_is_restored_and_saved(tmp_path):
    rgba = np.dstack([_photo(10, 12), np.full((10, 12), 128, np.uint8)])
    result = ColorizationPipeline("tint")(rgba)
    assert result.to_pil().mode == "RGBA"
    out = result.save(tmp_path / "x.png")
    assert np.asarray(Image.open(out))[0, 0, 3] == 128


def test_gray_input_and_sepia_input_give_the_same_result():
    gray = np.asarray(Image.fromarray(_photo()).convert("L"))
    g = gray.astype(np.float64) / 255
    sepia = (np.stack([g, g * 0.9, g * 0.7], -1) * 255).round().astype(np.uint8)
    a = ColorizationPipeline("tint")(sepia)
    assert a.original is None  # a tinted photo is not treated as a colour ground truth
    assert a.ab[..., 0].std() < 1e-5  # tint's chroma is constant; sepia's own tint is discarded


def test_device_and_dtype_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device(None).type in ("cpu", "cuda", "mps")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("float8", torch.device("cpu"))


def test_a_device_this_machine_lacks_is_a_clear_error():
    """Not torch's traceback from deep inside a model: the name, and what to use instead."""
    with pytest.raises(DeviceUnavailable, match="unknown device 'tpu'; use auto, cpu"):
        resolve_device("tpu")
    if torch.cuda.is_available():
        missing = f"cuda:{torch.cuda.device_count()}"
        with pytest.raises(DeviceUnavailable, match=f"'{missing}' is not available"):
            resolve_device(missing)
    else:
        with pytest.raises(DeviceUnavailable, match="finds no CUDA GPU"):
            resolve_device("cuda")
        with pytest.raises(DeviceUnavailable, match="finds no CUDA GPU"):
            ColorizationPipeline("gray", device="cuda:0")


def test_result_repr_is_short():
    result = ColorizationPipeline("gray")(_photo())
    text = repr(result)
    assert text.startswith("ColorizationResult(131x97, source=") and "array([" not in text
    assert len(text) < 120  # not the thousands of numbers a dataclass repr prints


class _ConvModel(Colorizer):
    name = "conv"

    def __init__(self):
        super().__init__(working_size=24)
        self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, L):
        return self.conv(L / 100.0) * 10


def test_reduced_precision_uses_autocast_with_float32_weights():
    torch.manual_seed(0)
    model = _ConvModel()
    full = ColorizationPipeline(model)(_photo())
    half = ColorizationPipeline(model, dtype="bfloat16")(_photo())
    assert model.conv.weight.dtype == torch.float32
    assert half.rgb.shape == (97, 131, 3)
    assert 0 < np.abs(half.ab - full.ab).max() < 0.5  # bfloat16 rounding, same colours


def test_iter_image_files(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.png", "b.JPG", "notes.txt", "sub/c.webp"):
        (tmp_path / name).write_bytes(b"x")
    found = {p.name for p in iter_image_files([tmp_path])}
    assert found == {"a.png", "b.JPG", "c.webp"}
    assert {p.name for p in iter_image_files([str(tmp_path / "*.png")])} == {"a.png"}
    assert {p.name for p in iter_image_files([tmp_path], recursive=False)} == {"a.png", "b.JPG"}


def test_model_by_name():
    pipe = ColorizationPipeline("tint", device="cpu")
    assert pipe.model.name == "tint" and isinstance(create_colorizer("gray"), Colorizer)
