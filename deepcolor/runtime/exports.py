"""Exported graphs, built once per weights and cached.

A model's network is exported to OpenVINO's format (``model.xml`` + ``model.bin``, float32
weights) at its working size. The folder is keyed by a hash of everything the graph depends on
(the weights, the configuration, the working size, the OpenVINO version), so new weights or a
new OpenVINO never reuse an old graph; it is built in a staging folder and renamed into place
(:func:`deepcolor.atomic.build_folder_atomically`), and ``export.json``, written last, marks it
complete. A folder that cannot be read is said to be damaged and is built again.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import build_folder_atomically
from ..errors import DeepColorError
from ..models.base import Colorizer
from ..weights import cache_root

#: bump when the way graphs are exported changes, so that old exports are not reused
EXPORT_FORMAT = 1
GRAPH_FILE = "model.xml"
WEIGHTS_FILE = "model.bin"
RECORD_FILE = "export.json"


class ExportFailed(DeepColorError):
    """The graph could not be exported or read back."""


class _Network(nn.Module):
    """What is exported: L at the working size -> ab, the model's own forward."""

    def __init__(self, model: Colorizer) -> None:
        super().__init__()
        self.model = model

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        return self.model(L)


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (OpenVINO's messages run to many lines)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


def _openvino_version() -> str:
    import openvino

    return openvino.get_version()


def export_key(model: Colorizer, int8: bool = False) -> str:
    """A hash of what the exported graph depends on: class, configuration, working size,
    every tensor's name, dtype, shape and bytes, the OpenVINO version and the precision."""
    digest = hashlib.blake2b(digest_size=16)
    config = getattr(model, "_hub_mixin_config", None) or {}
    header = {
        "format": EXPORT_FORMAT,
        "int8": int8,
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "config": config,
        "working_size": model.working_size,
        "openvino": _openvino_version(),
    }
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def export_folder(model: Colorizer, key: str) -> Path:
    """Where ``model``'s export under ``key`` lives: ``DEEPCOLOR_CACHE/exports/NAME-KEY``."""
    return cache_root() / "exports" / f"{model.name}-{key[:20]}"


def calibration_inputs(size: int) -> list:
    """L at the working size of the example photos shipped with the package, and their mirror
    images: what int8 quantisation measures activation ranges on."""
    import numpy as np

    from ..color import rgb_to_luminance
    from ..images import load_image
    from ..processing import resize_smooth

    folder = Path(__file__).resolve().parent.parent / "examples"
    inputs = []
    for path in sorted(folder.glob("*.jpg")):
        rgb = torch.from_numpy(load_image(path).rgb).permute(2, 0, 1)[None]
        L = resize_smooth(rgb_to_luminance(rgb).float(), (size, size)).numpy()
        inputs += [L, np.ascontiguousarray(L[..., ::-1])]
    return inputs


def _quantized(graph: Any, size: int) -> Any:
    """``graph`` with int8 weights and activations (NNCF post-training quantisation)."""
    import nncf

    inputs = calibration_inputs(size)
    return nncf.quantize(
        graph,
        nncf.Dataset(inputs),
        subset_size=len(inputs),
        model_type=nncf.ModelType.TRANSFORMER,
    )


def _export(model: Colorizer, folder: Path, int8: bool = False) -> None:
    import openvino as ov

    size = model.working_size
    start = time.perf_counter()
    example = torch.full((1, 1, size, size), 50.0)
    # tracing warns about every Python branch on a shape; the shape is fixed here
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = ov.convert_model(
            _Network(model.eval()), example_input=(example,), input=[(1, 1, size, size)]
        )
    if int8:
        graph = _quantized(graph, size)
    folder.mkdir(parents=True)
    # float32 on disk: the default would halve the weights to float16 and change the colours
    ov.save_model(graph, str(folder / GRAPH_FILE), compress_to_fp16=False)
    record = {
        "model": model.name,
        "working_size": size,
        "precision": "int8" if int8 else "float32",
        "openvino": _openvino_version(),
        "export_seconds": round(time.perf_counter() - start, 1),
        "bytes": {f: (folder / f).stat().st_size for f in (GRAPH_FILE, WEIGHTS_FILE)},
    }
    (folder / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")


def _read(folder: Path) -> Any:
    """The exported graph in ``folder``, checked against its record; ExportFailed if not."""
    import openvino as ov

    try:
        record = json.loads((folder / RECORD_FILE).read_text())
        for name, size in record["bytes"].items():
            actual = (folder / name).stat().st_size
            if actual != size:
                raise ValueError(f"{name} has {actual:,} bytes, {size:,} were written")
        core = ov.Core()
        # read into memory: a mapped file that shrinks or goes away under a running process
        # would kill it (SIGBUS); read, it can be replaced or damaged without harm
        core.set_property({"ENABLE_MMAP": False})
        return core.read_model(str(folder / GRAPH_FILE))
    except Exception as exc:  # a damaged file raises anything from OSError to OpenVINO's own
        raise ExportFailed(first_line(exc)) from exc


def exported_graph(model: Colorizer, int8: bool = False) -> tuple[Any, str]:
    """``(graph, note)``: the cached export of ``model`` (built now when missing; built again,
    with a note saying so, when the cached one is damaged); ``int8``: quantised."""
    key = export_key(model, int8)
    folder = export_folder(model, key)
    note = ""
    if (folder / RECORD_FILE).is_file():
        try:
            return _read(folder), note
        except ExportFailed as exc:
            note = f"the cached OpenVINO export of {model.name} at {folder} was damaged ({exc}); "
            note += "exported it again"
            # the damaged folder is complete by its record: remove it so it is rebuilt
            (folder / RECORD_FILE).unlink(missing_ok=True)
    # the first run of new weights waits for this: say what it is waiting for
    precision = "int8" if int8 else "float32"
    print(
        f"deepcolor: exporting {model.name} for OpenVINO ({precision}), once for these weights; "
        f"this takes a minute or more (cached in {folder.parent})",
        file=sys.stderr,
    )
    try:
        build_folder_atomically(
            folder,
            lambda staging: _export(model, staging, int8),
            complete=RECORD_FILE,
            locks=cache_root() / ".locks",
        )
    except Exception as exc:
        raise ExportFailed(first_line(exc)) from exc
    return _read(folder), note
