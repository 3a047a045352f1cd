"""``blend`` (a weighted sum of members' ab) and ``unet_bins`` (unet with the 313-bin head)."""

from __future__ import annotations

import pytest
import torch
from tiny_models import TINY_KWARGS

from deepcolor import create_colorizer
from deepcolor.color import annealed_mean
from deepcolor.errors import InvalidCondition, UnknownModel
from deepcolor.models.blend import DEFAULT_MEMBERS

SMALL = TINY_KWARGS["unet"]


def _L(size=(32, 32)) -> torch.Tensor:
    return torch.rand(2, 1, *size, generator=torch.Generator().manual_seed(0)) * 100


def _member(model: str, weight: float, **kwargs) -> dict:
    return {"model": model, "weight": weight, "weights": None, "kwargs": {**SMALL, **kwargs}}


def test_blend_is_the_weighted_sum_of_its_members():
    torch.manual_seed(0)
    blend = create_colorizer(
        "blend",
        weights=None,
        members=[_member("unet", 1.0), _member("unet_bins", 0.5, temperature=0.5)],
    )
    regression, bins = blend.members
    L = _L()
    expected = regression.predict(L) + 0.5 * bins.predict(L)
    torch.testing.assert_close(blend.predict(L), expected)
    torch.testing.assert_close(blend.predict(L, chroma_gain=2.0), 2.0 * expected)
    assert blend.working_size == 32 and blend.size_multiple == 32
    # a negative weight subtracts: the sum really uses each weight
    minus = create_colorizer("blend", weights=None, members=[_member("unet", -1.0)])
    minus.members[0].load_state_dict(regression.state_dict())
    torch.testing.assert_close(minus.predict(L), -regression.predict(L))


def test_default_blend_is_the_shipped_regression_plus_half_the_classifier():
    blend = create_colorizer("blend")
    assert [m.name for m in blend.members] == ["unet", "unet_bins"]
    assert blend.weights == [1.0, 0.5]
    regression, bins = blend.members
    assert regression.chroma_gain == 1.0  # not the 1.5 that `unet` alone ships with
    assert bins.loss == "classification" and bins.temperature == 0.38
    shipped = create_colorizer("unet")
    ours, theirs = shipped.state_dict(), regression.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    L = _L((64, 64))
    torch.testing.assert_close(
        blend.predict(L), shipped.predict(L, chroma_gain=1.0) + 0.5 * bins.predict(L)
    )
    assert DEFAULT_MEMBERS[1]["weight"] == 0.5


@pytest.mark.parametrize(
    ("members", "error", "message"),
    [
        ([], InvalidCondition, "non-empty"),
        ([{"weight": 1.0}], InvalidCondition, "'model' name"),
        ([{"model": "no-such-model"}], UnknownModel, "available models"),
        ([{"model": "unet", "weight": "half"}], InvalidCondition, "must be a number"),
        ([{"model": "unet", "colour": "red"}], InvalidCondition, "unknown keys"),
        ([{"model": "exemplar"}], InvalidCondition, "needs reference"),
        ([{"model": "unet", "kwargs": 3}], InvalidCondition, "kwargs must be a dict"),
    ],
)
def test_bad_members_are_refused_clearly(members, error, message):
    with pytest.raises(error, match=message):
        create_colorizer("blend", weights=None, members=members)


def test_members_must_share_a_working_size():
    members = [_member("unet", 1.0), _member("unet", 1.0, working_size=64)]
    with pytest.raises(InvalidCondition, match="one working size"):
        create_colorizer("blend", weights=None, members=members)


def test_blend_is_not_trained_itself():
    from train.loop import TrainingError, check_model

    with pytest.raises(TrainingError, match="nothing to train"):
        check_model("blend")


def test_unet_bins_takes_a_temperature_at_inference_and_unet_does_not():
    torch.manual_seed(0)
    bins = create_colorizer("unet_bins", weights=None, **SMALL)
    assert bins.loss == "classification"
    L = _L()
    bins.eval()
    with torch.no_grad():
        logits = bins._head_output(L)
    torch.testing.assert_close(bins.predict(L, temperature=0.2), annealed_mean(logits, 0.2))
    assert not torch.allclose(bins.predict(L, temperature=0.2), bins.predict(L))
    with pytest.raises(InvalidCondition, match="temperature"):
        bins.predict(L, temperature=-1)
    regression = create_colorizer("unet", weights=None, **SMALL)
    with pytest.raises(InvalidCondition, match="does not take temperature"):
        regression.predict(L, temperature=0.5)
