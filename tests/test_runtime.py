"""Inference backends: the automatic choice, the OpenVINO export (cached, reused, rebuilt when
damaged, a torch fallback when it cannot be built) and its equality with torch."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from tiny_models import TINY_KWARGS

from deepcolor import ColorizationPipeline
from deepcolor.errors import InvalidCondition
from deepcolor.models.ddcolor import DDColorTinyColorizer
from deepcolor.runtime import exports

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One DeepColor cache for the module, so the tiny model is exported once."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEEPCOLOR_CACHE", str(folder))
        patch.delenv("DEEPCOLOR_BACKEND", raising=False)
        yield folder


@pytest.fixture(scope="module")
def model() -> DDColorTinyColorizer:
    torch.manual_seed(0)
    return DDColorTinyColorizer(**TINY_KWARGS["ddcolor-tiny"]).eval()


@pytest.fixture(scope="module")
def served(cache, model) -> ColorizationPipeline:
    return ColorizationPipeline(model, device="cpu")


@pytest.fixture
def photo(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:61, 0:83]
    gray = (127 + 80 * np.sin(x / 9.0) * np.cos(y / 7.0) + rng.integers(-20, 21, x.shape)).clip(
        0, 255
    )
    path = tmp_path / "photo.png"
    Image.fromarray(gray.astype(np.uint8)).save(path)
    return path


def _folders(cache) -> list:
    return sorted((cache / "exports").glob("ddcolor-tiny-*"))


def test_auto_serves_ddcolor_with_openvino_and_equals_torch(served, model, photo, cache):
    assert served.backend.name == "openvino" and served.backend.note == ""
    torch_pipe = ColorizationPipeline(model, device="cpu", backend="torch")
    L = torch.rand(2, 1, 45, 70) * 100
    ab_openvino, ab_torch = served.predict_ab(L), torch_pipe.predict_ab(L)
    assert ab_openvino.shape == ab_torch.shape == (2, 2, 45, 70)
    assert (ab_openvino - ab_torch).abs().max() < 1e-3
    assert np.abs(served(photo).rgb.astype(int) - torch_pipe(photo).rgb.astype(int)).max() <= 1
    # exported once, complete, beside the other cached weights
    (folder,) = _folders(cache)
    assert {p.name for p in folder.iterdir()} == {"model.xml", "model.bin", "export.json"}


def test_auto_keeps_torch_where_openvino_does_not_serve(cache, model):
    assert ColorizationPipeline("gray").backend.name == "torch"
    assert ColorizationPipeline(model, dtype="bfloat16").backend.name == "torch"
    with pytest.raises(InvalidCondition) as caught:
        ColorizationPipeline("gray", backend="openvino")
    assert str(caught.value) == (
        "backend 'openvino' cannot run gray: model 'gray' is not served by it (it serves the "
        "DDColor models)"
    )
    with pytest.raises(InvalidCondition) as caught:
        ColorizationPipeline(model, backend="openvino", dtype="float16")
    assert str(caught.value) == (
        "backend 'openvino' cannot run ddcolor-tiny: it runs in float32, and this pipeline is "
        "set to float16"
    )
    with pytest.raises(InvalidCondition, match="unknown backend 'onnx'; choose from auto, torch"):
        ColorizationPipeline("gray", backend="onnx")


def test_the_setting_chooses_when_no_backend_is_named(cache, model, monkeypatch):
    monkeypatch.setenv("DEEPCOLOR_BACKEND", "torch")
    assert ColorizationPipeline(model).backend.name == "torch"
    monkeypatch.setenv("DEEPCOLOR_BACKEND", "fast")
    with pytest.raises(InvalidCondition) as caught:
        ColorizationPipeline(model)
    assert str(caught.value) == (
        "DEEPCOLOR_BACKEND=fast: unknown backend 'fast'; choose from auto, torch, openvino, "
        "openvino-int8"
    )


def test_a_cached_export_is_reused_without_exporting(served, model, monkeypatch):
    def no_export(*_args):
        raise AssertionError("exported again")

    monkeypatch.setattr(exports, "_export", no_export)
    again = ColorizationPipeline(model)
    assert again.backend.name == "openvino" and again.backend.note == ""


def test_a_damaged_export_is_said_and_rebuilt(served, model, photo, cache, capsys):
    (folder,) = _folders(cache)
    weights = folder / "model.bin"
    size = weights.stat().st_size
    with open(weights, "r+b") as handle:
        handle.truncate(size // 2)
    rebuilt = ColorizationPipeline(model)
    assert rebuilt.backend.name == "openvino"
    assert capsys.readouterr().err == (
        "deepcolor: exporting ddcolor-tiny for OpenVINO (float32), once for these weights; this "
        f"takes a minute or more (cached in {folder.parent})\n"
        f"deepcolor: the cached OpenVINO export of ddcolor-tiny at {folder} was damaged "
        f"(ValueError: model.bin has {size // 2:,} bytes, {size:,} were written); "
        "exported it again\n"
    )
    assert weights.stat().st_size == size
    torch_pipe = ColorizationPipeline(model, backend="torch")
    assert np.abs(rebuilt(photo).rgb.astype(int) - torch_pipe(photo).rgb.astype(int)).max() <= 1


def test_an_export_that_cannot_be_built_falls_back_to_torch(
    model, photo, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("DEEPCOLOR_CACHE", str(tmp_path / "fresh"))
    monkeypatch.delenv("DEEPCOLOR_BACKEND", raising=False)

    def unsupported(*_args):
        raise RuntimeError("an operation OpenVINO does not know\nmore detail")

    monkeypatch.setattr(exports, "_export", unsupported)
    pipe = ColorizationPipeline(model)
    assert pipe.backend.name == "torch"
    exports_folder = tmp_path / "fresh" / "exports"
    assert capsys.readouterr().err == (
        "deepcolor: exporting ddcolor-tiny for OpenVINO (float32), once for these weights; this "
        f"takes a minute or more (cached in {exports_folder})\n"
        "deepcolor: could not export ddcolor-tiny for OpenVINO (RuntimeError: an operation "
        "OpenVINO does not know); running it with torch\n"
    )
    assert pipe(photo).rgb.shape == (61, 83, 3)
    # nothing half-built is left under the final name
    assert not list((tmp_path / "fresh" / "exports").glob("ddcolor-tiny-*"))


def test_a_model_built_by_name_keeps_no_second_copy_in_torch(served, model, tmp_path, photo):
    folder = tmp_path / "weights"
    model.save_pretrained(folder)
    pipe = ColorizationPipeline("ddcolor-tiny", weights=str(folder))
    assert pipe.backend.name == "openvino"
    assert {p.device.type for p in pipe.model.parameters()} == {"meta"}
    assert np.array_equal(pipe(photo).rgb, served(photo).rgb)
    # a model the caller passed in is left as it was
    assert {p.device.type for p in served.model.parameters()} == {"cpu"}
    shutil.rmtree(folder)


def test_the_cli_names_and_takes_the_backend(cache, photo, tmp_path, capsys):
    from deepcolor.cli import main

    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # each model's name starts a line; its backend is said two lines below
    backend = {
        lines[i].split()[0]: lines[i + 2].strip()
        for i in range(len(lines) - 2)
        if lines[i] and not lines[i][0].isspace()
    }
    assert backend["ddcolor-tiny"] == "backend here: openvino on cpu"
    assert backend["gray"] == "backend here: torch on cpu"
    out = str(tmp_path / "out")
    code = main(["colorize", str(photo), "-o", out, "--model", "gray", "--backend", "openvino"])
    assert code == 1
    assert capsys.readouterr().err == (
        "error: backend 'openvino' cannot run gray: model 'gray' is not served by it (it serves "
        "the DDColor models)\n"
    )


def test_int8_is_a_separate_export_asked_for_by_name(served, model, cache):
    pytest.importorskip("nncf")
    int8 = ColorizationPipeline(model, backend="openvino-int8")
    assert int8.backend.name == "openvino-int8"
    folders = _folders(cache)
    assert len(folders) == 2  # the float32 export is kept beside the int8 one
    records = {json.loads((f / "export.json").read_text())["precision"] for f in folders}
    assert records == {"float32", "int8"}
    L = torch.rand(1, 1, 40, 40) * 100
    difference = (int8.predict_ab(L) - served.predict_ab(L)).abs()
    assert 0 < difference.max() < 30  # quantised: close to float32, not equal


def test_int8_is_refused_where_it_was_not_shown_to_keep_the_colours(cache, model, monkeypatch):
    monkeypatch.setattr(DDColorTinyColorizer, "int8_keeps_colours", False)
    with pytest.raises(InvalidCondition) as caught:
        ColorizationPipeline(model, backend="openvino-int8")
    assert str(caught.value) == (
        "backend 'openvino-int8' cannot run ddcolor-tiny: int8 is offered only where it was "
        "measured to keep the colours (the DDColor models); use backend 'openvino' (float32)"
    )
