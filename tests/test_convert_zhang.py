"""The official ECCV16 / SIGGRAPH17 checkpoints load into our full variants and compute the same.

A random-valued checkpoint in the official layout (tests/data/zhang_official_layouts.json, a copy
of ../shared/data/zhang/*_state_dict.json) is converted and loaded with ``strict=True``; our
model's output is compared with the official forward pass written below with functional torch
ops straight from the raw official state dict, following the layout description.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from deepcolor import create_colorizer
from deepcolor.color import ab_bin_centers
from deepcolor.convert import eccv16 as convert_eccv16
from deepcolor.convert import siggraph17 as convert_siggraph17
from deepcolor.errors import InvalidCondition, ModelUnavailable
from deepcolor.models.eccv16 import ECCV16Colorizer
from deepcolor.models.siggraph17 import SIGGRAPH17Colorizer

LAYOUTS = json.loads((Path(__file__).parent / "data" / "zhang_official_layouts.json").read_text())
CONVERTERS = {"eccv16": convert_eccv16, "siggraph17": convert_siggraph17}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # small tensors: one thread is as fast and avoids stalls when the 2 cores are shared
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def random_official_checkpoint(name: str, seed: int) -> dict[str, torch.Tensor]:
    """Random weights in the official layout, scaled so activations stay O(1) through the net."""
    gen = torch.Generator().manual_seed(seed)
    layout = [(key, tuple(shape)) for key, shape in LAYOUTS[name]]
    bn_modules = {k.rsplit(".", 1)[0] for k, _ in layout if k.endswith(".running_mean")}
    state: dict[str, torch.Tensor] = {}
    for key, shape in layout:
        module, tensor = key.rsplit(".", 1)
        if tensor == "num_batches_tracked":
            state[key] = torch.tensor(1000 + seed, dtype=torch.long)
        elif module in bn_modules:
            base = {"weight": 1.0, "bias": 0.0, "running_mean": 0.5, "running_var": 1.0}[tensor]
            noise = torch.rand(shape, generator=gen) - 0.5  # keeps running_var positive
            state[key] = base + noise * (0.5 if tensor != "running_mean" else 1.0)
        elif tensor == "weight":
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.05
    if name == "eccv16":  # model_out is Caffe's class8_ab: the bin centres / 110
        state["model_out.weight"] = ab_bin_centers().T.reshape(2, 313, 1, 1) / 110
    return state


# --- the official forward passes, from the layout description ----------------------------------


def _conv(sd, x, name, stride=1, padding=1, dilation=1):
    return F.conv2d(x, sd[f"{name}.weight"], sd[f"{name}.bias"], stride, padding, dilation)


def _deconv(sd, x, name):  # ConvTranspose2d(k=4, s=2, p=1)
    return F.conv_transpose2d(x, sd[f"{name}.weight"], sd[f"{name}.bias"], stride=2, padding=1)


def _bn(sd, x, name):  # eval-mode BatchNorm2d(eps=1e-5)
    return F.batch_norm(
        x,
        sd[f"{name}.running_mean"],
        sd[f"{name}.running_var"],
        sd[f"{name}.weight"],
        sd[f"{name}.bias"],
        training=False,
        eps=1e-5,
    )


def _block(sd, x, name, convs, last_stride=1, dilation=1):
    """[Conv3x3, ReLU] * convs (ReLUs at the odd indices), then BN at index 2*convs."""
    for j in range(convs):
        stride = last_stride if j == convs - 1 else 1
        x = F.relu(_conv(sd, x, f"{name}.{2 * j}", stride, dilation, dilation))
    return _bn(sd, x, f"{name}.{2 * convs}")


def official_eccv16(sd, L):
    x = (L - 50) / 100
    x = _block(sd, x, "model1", 2, last_stride=2)
    x = _block(sd, x, "model2", 2, last_stride=2)
    x = _block(sd, x, "model3", 3, last_stride=2)
    x = _block(sd, x, "model4", 3)
    x = _block(sd, x, "model5", 3, dilation=2)
    x = _block(sd, x, "model6", 3, dilation=2)
    x = _block(sd, x, "model7", 3)
    x = F.relu(_deconv(sd, x, "model8.0"))
    x = F.relu(_conv(sd, x, "model8.2"))
    x = F.relu(_conv(sd, x, "model8.4"))
    conv8_3 = _conv(sd, x, "model8.6", padding=0)
    out_reg = F.conv2d(F.softmax(conv8_3, dim=1), sd["model_out.weight"])
    return F.interpolate(out_reg, scale_factor=4, mode="bilinear") * 110


def official_siggraph17(sd, L, hint_ab, mask):
    x = torch.cat(((L - 50) / 100, hint_ab / 110, mask), dim=1)
    conv1_2 = _block(sd, x, "model1", 2)
    conv2_2 = _block(sd, conv1_2[:, :, ::2, ::2], "model2", 2)
    conv3_3 = _block(sd, conv2_2[:, :, ::2, ::2], "model3", 3)
    conv4_3 = _block(sd, conv3_3[:, :, ::2, ::2], "model4", 3)
    conv5_3 = _block(sd, conv4_3, "model5", 3, dilation=2)
    conv6_3 = _block(sd, conv5_3, "model6", 3, dilation=2)
    conv7_3 = _block(sd, conv6_3, "model7", 3)
    conv8_up = _deconv(sd, conv7_3, "model8up.0") + _conv(sd, conv3_3, "model3short8.0")
    x = F.relu(_conv(sd, F.relu(conv8_up), "model8.1"))
    conv8_3 = _bn(sd, F.relu(_conv(sd, x, "model8.3")), "model8.5")
    conv9_up = _deconv(sd, conv8_3, "model9up.0") + _conv(sd, conv2_2, "model2short9.0")
    conv9_3 = _bn(sd, F.relu(_conv(sd, F.relu(conv9_up), "model9.1")), "model9.3")
    conv10_up = _deconv(sd, conv9_3, "model10up.0") + _conv(sd, conv1_2, "model1short10.0")
    conv10_2 = F.leaky_relu(_conv(sd, F.relu(conv10_up), "model10.1"), 0.2)
    return torch.tanh(_conv(sd, conv10_2, "model_out.0", padding=0)) * 110


@pytest.fixture(scope="module")
def eccv16_checkpoint() -> dict[str, torch.Tensor]:
    return random_official_checkpoint("eccv16", seed=1)


@pytest.fixture(scope="module")
def siggraph17_checkpoint() -> dict[str, torch.Tensor]:
    return random_official_checkpoint("siggraph17", seed=2)


def _lightness(batch: int, height: int, width: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    smooth = F.interpolate(
        torch.rand(batch, 1, height // 4, width // 4, generator=gen), (height, width)
    )
    return (smooth * 80 + torch.rand(batch, 1, height, width, generator=gen) * 20).clamp(0, 100)


# --- layouts and key maps ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["eccv16", "siggraph17"])
def test_converter_expects_exactly_the_official_layout(name):
    converter = CONVERTERS[name]
    layout = [(key, tuple(shape)) for key, shape in LAYOUTS[name]]
    assert list(converter.OFFICIAL_SHAPES.items()) == layout
    # the key map is one-to-one onto our full model's state dict, shapes agreeing
    model_cls = ECCV16Colorizer if name == "eccv16" else SIGGRAPH17Colorizer
    with torch.device("meta"):
        ours = model_cls(variant="full").state_dict()
    assert sorted(converter.KEY_MAP.values()) == sorted(ours)
    for official, shape in layout:
        assert tuple(ours[converter.KEY_MAP[official]].shape) == shape, official


def test_layout_fixture_matches_the_shared_reference(shared_data):
    for name in ("eccv16", "siggraph17"):
        reference = json.loads((shared_data / "zhang" / f"{name}_state_dict.json").read_text())
        expected = [[e["key"], e["shape"]] for e in reference["state_dict"]]
        assert LAYOUTS[name] == expected
        assert len(expected) == reference["num_state_dict_entries"]


# --- outputs equal the official computation ---------------------------------------------------


def _without_counters(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


@pytest.mark.parametrize("from_file", [True, False])
def test_eccv16_official_checkpoint_matches_official_forward(
    eccv16_checkpoint, tmp_path, from_file
):
    if from_file:  # the .pth path, BatchNorm counters included
        path = tmp_path / convert_eccv16.OFFICIAL_FILE
        torch.save(eccv16_checkpoint, path)
        model = convert_eccv16.load_eccv16_checkpoint(path)  # strict=True inside
        assert int(model.conv1[4].num_batches_tracked) == 1001
    else:  # a state dict without the counters (older torch) converts and loads strictly too
        converted = convert_eccv16.convert_eccv16_checkpoint(_without_counters(eccv16_checkpoint))
        assert converted["classifier.weight"] is eccv16_checkpoint["model8.6.weight"]
        assert converted["decoder.weight"] is eccv16_checkpoint["model_out.weight"]
        model = ECCV16Colorizer(variant="full")
        result = model.load_state_dict(converted, strict=True)
        assert not result.missing_keys and not result.unexpected_keys
    assert model.variant == "full"
    L = _lightness(2, 24, 32, seed=3)
    expected = official_eccv16(eccv16_checkpoint, L)
    got = model.predict(L)
    assert got.shape == (2, 2, 24, 32)
    assert expected.std() > 0.5  # a real, varying colour signal is compared
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("from_file", [True, False])
def test_siggraph17_official_checkpoint_matches_official_forward(
    siggraph17_checkpoint, tmp_path, from_file
):
    if from_file:
        path = tmp_path / convert_siggraph17.OFFICIAL_FILE
        torch.save(siggraph17_checkpoint, path)
        model = convert_siggraph17.load_siggraph17_checkpoint(path)
    else:
        converted = convert_siggraph17.convert_siggraph17_checkpoint(
            _without_counters(siggraph17_checkpoint)
        )
        model = SIGGRAPH17Colorizer(variant="full")
        model.load_state_dict(converted, strict=True)
    assert model.variant == "full" and model.mask_center == 0.0
    L = _lightness(1, 24, 24, seed=4)
    gen = torch.Generator().manual_seed(5)
    mask = (torch.rand(1, 1, 24, 24, generator=gen) < 0.05).float()
    hint_ab = (torch.rand(1, 2, 24, 24, generator=gen) * 160 - 80) * mask

    expected = official_siggraph17(siggraph17_checkpoint, L, hint_ab, mask)
    got = model.predict(L, hints=(hint_ab, mask))
    assert got.shape == (1, 2, 24, 24)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-3)

    # no hints = the official call with zero ab and zero mask
    zeros = torch.zeros_like(mask)
    expected_auto = official_siggraph17(siggraph17_checkpoint, L, zeros.repeat(1, 2, 1, 1), zeros)
    torch.testing.assert_close(model.predict(L), expected_auto, rtol=1e-4, atol=1e-3)
    assert (expected - expected_auto).abs().max() > 1e-2  # the hints did change the answer


def test_full_siggraph17_refuses_global_hints():
    model = SIGGRAPH17Colorizer(variant="full")  # the release has no global-hints branch
    with pytest.raises(InvalidCondition, match="global-hints"):
        model.predict(_lightness(1, 16, 16, seed=6), global_hints={"saturation": [[0.3]]})


# --- the weights folder written by the converter's command ------------------------------------


def test_convert_command_writes_a_weights_folder(eccv16_checkpoint, tmp_path, capsys):
    path = tmp_path / "official.pth"
    torch.save(eccv16_checkpoint, path)
    out = tmp_path / "eccv16-official"
    assert convert_eccv16.main([str(path), str(out)]) == 0
    model = create_colorizer("eccv16", weights=str(out))
    assert model.variant == "full" and model.working_size == 256
    L = _lightness(1, 24, 24, seed=7)
    torch.testing.assert_close(
        model.predict(L), official_eccv16(eccv16_checkpoint, L), rtol=1e-4, atol=1e-3
    )


# --- errors a person can act on ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["eccv16", "siggraph17"])
def test_missing_checkpoint_says_what_to_download(name, tmp_path, capsys):
    converter = CONVERTERS[name]
    load = getattr(converter, f"load_{name}_checkpoint")
    with pytest.raises(ModelUnavailable) as info:
        load(tmp_path / "nowhere.pth")
    message = str(info.value)
    assert converter.OFFICIAL_FILE in message and converter.OFFICIAL_URL in message
    assert converter.main([str(tmp_path / "nowhere.pth"), str(tmp_path / "out")]) == 1
    assert converter.OFFICIAL_URL in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_not_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"this is not a pickle")
    with pytest.raises(ModelUnavailable, match="not a readable PyTorch checkpoint"):
        convert_eccv16.load_eccv16_checkpoint(path)


def test_wrong_keys_and_shapes_are_refused(eccv16_checkpoint, siggraph17_checkpoint):
    bad_shape = dict(eccv16_checkpoint)
    bad_shape["model4.0.weight"] = torch.zeros(512, 256, 3, 1)
    with pytest.raises(ModelUnavailable, match=r"model4\.0\.weight: \(512, 256, 3, 1\)"):
        convert_eccv16.convert_eccv16_checkpoint(bad_shape)

    missing = {k: v for k, v in eccv16_checkpoint.items() if k != "model_out.weight"}
    with pytest.raises(ModelUnavailable, match="missing 1 keys.*model_out.weight"):
        convert_eccv16.convert_eccv16_checkpoint(missing)

    # a SIGGRAPH17 file given to the ECCV16 converter: wrong network
    with pytest.raises(ModelUnavailable, match="unexpected"):
        convert_eccv16.convert_eccv16_checkpoint(siggraph17_checkpoint)

    extra = dict(siggraph17_checkpoint)
    extra["module.extra.weight"] = torch.zeros(1)
    with pytest.raises(ModelUnavailable, match=r"unexpected 1 keys.*module\.extra\.weight"):
        convert_siggraph17.convert_siggraph17_checkpoint(extra)
