import pytest

from deepcolor.datasets import EVAL_DATA_ENV, eval_data_folder
from deepcolor.errors import DataUnavailable


def test_the_data_folder_comes_from_the_argument_then_the_setting(tmp_path, monkeypatch):
    given, configured = tmp_path / "given", tmp_path / "configured"
    given.mkdir()
    configured.mkdir()
    monkeypatch.setenv(EVAL_DATA_ENV, str(configured))
    assert eval_data_folder(given) == given
    assert eval_data_folder() == configured


def test_a_missing_setting_or_folder_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(EVAL_DATA_ENV, raising=False)
    with pytest.raises(DataUnavailable, match="set DEEPCOLOR_EVAL_DATA=DIR .* or pass --data"):
        eval_data_folder()
    monkeypatch.setenv(EVAL_DATA_ENV, str(tmp_path / "missing"))
    with pytest.raises(DataUnavailable, match=r"missing \(DEEPCOLOR_EVAL_DATA\) does not exist"):
        eval_data_folder()
    with pytest.raises(DataUnavailable, match=r"nowhere \(--data\) does not exist"):
        eval_data_folder(tmp_path / "nowhere")
