import pytest

from deepcolor import create_colorizer, list_colorizers, register_colorizer
from deepcolor.errors import DuplicateModel, ModelUnavailable, UnknownModel
from deepcolor.models.base import Colorizer
from deepcolor.registry import colorizer_info, registered_colorizer
from deepcolor.weights import resolve_weights


def test_baselines_registered_and_described():
    names = [info.name for info in list_colorizers()]
    assert {"gray", "tint"} <= set(names) and names == sorted(names)
    info = colorizer_info("tint")
    assert "2.46" in info.summary and info.describe_conditions() == "L only" and not info.trainable


def test_duplicate_names_refused():
    with pytest.raises(DuplicateModel, match="already registered"):
        register_colorizer("gray", summary="again")(object)


def test_unknown_model_lists_choices():
    with pytest.raises(UnknownModel, match="available models: .*gray"):
        create_colorizer("nope")


def test_tint_default_and_custom_colour():
    import torch

    L = torch.full((2, 1, 3, 4), 50.0)
    ab = create_colorizer("tint").predict(L)
    assert ab.shape == (2, 2, 3, 4) and ab[0, 0, 0, 0].item() == pytest.approx(2.46)
    assert create_colorizer("tint", weights=None, a=10, b=-5).predict(L)[0, 1, 0, 0].item() == -5


class _Learned(Colorizer):
    def __init__(self, width: int = 2):
        super().__init__(working_size=8)
        import torch

        self.scale = torch.nn.Parameter(torch.ones(width))


@pytest.fixture
def learned_model():
    """``test-learned`` in the registry for one test only."""
    with registered_colorizer("test-learned", _Learned, summary="a test model"):
        yield "test-learned"


def test_registration_names_the_class(learned_model):
    assert _Learned.name == learned_model and _Learned.needs == () and _Learned.accepts == ()
    assert learned_model in [info.name for info in list_colorizers()]


def test_temporary_models_are_gone_after_their_test():
    class _Temporary(_Learned):
        pass

    with registered_colorizer("test-temporary", _Temporary, summary="t", accepts=("seed",)):
        assert colorizer_info("test-temporary").accepts == ("seed",)
    with pytest.raises(UnknownModel):
        colorizer_info("test-temporary")


def test_learned_model_without_weights_is_unavailable_and_loads_from_folder(
    tmp_path, learned_model
):
    with pytest.raises(ModelUnavailable, match="no default weights"):
        create_colorizer("test-learned")
    model = create_colorizer("test-learned", weights=None, width=3)
    with __import__("torch").no_grad():
        model.scale.fill_(7)
    model.save_pretrained(tmp_path / "w")
    loaded = create_colorizer("test-learned", weights=str(tmp_path / "w"))
    assert loaded.scale.tolist() == [7.0, 7.0, 7.0]


def test_weights_resolution_errors(tmp_path):
    with pytest.raises(ModelUnavailable, match="no folder"):
        resolve_weights(str(tmp_path / "missing" / "deeper"))
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(ModelUnavailable, match="is a file"):
        resolve_weights(tmp_path / "file.bin")
    with pytest.raises(ModelUnavailable, match="hf download someone/weights"):
        resolve_weights("someone/weights")  # offline in tests: clear instructions
    with pytest.raises(ModelUnavailable, match="shipped weights"):
        resolve_weights("shipped:not-a-model")
