"""The ``openvino`` backend: the model's exported graph, compiled for this CPU.

Compiled in float32 (``INFERENCE_PRECISION_HINT``): on CPUs with bfloat16 units OpenVINO would
otherwise lower the precision by itself and the colours would differ from torch's. It uses as
many threads as torch is set to, so one setting (``torch.set_num_threads``, ``OMP_NUM_THREADS``)
governs both.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch

from ..models.base import Colorizer
from .exports import exported_graph


class OpenVINOBackend:
    """Runs ``model``'s exported graph; one photo at a time (a CPU gains nothing from batches)."""

    def __init__(self, model: Colorizer, int8: bool = False) -> None:
        import openvino as ov

        self.name = "openvino-int8" if int8 else "openvino"
        graph, self.note = exported_graph(model, int8)
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
            "INFERENCE_NUM_THREADS": max(1, torch.get_num_threads()),
        }
        self._compiled = ov.Core().compile_model(graph, "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()  # an infer request serves one caller at a time
        self.model = model
        self.size = (model.working_size, model.working_size)

    def predict(self, L_work: torch.Tensor, conditions: dict[str, Any]) -> torch.Tensor:
        self.model.check_conditions(conditions)  # served models take none; say so as torch would
        if tuple(L_work.shape[-2:]) != self.size:
            raise ValueError(f"the export takes L at {self.size}, got {tuple(L_work.shape)}")
        L = L_work.detach().to("cpu", torch.float32).numpy()
        outputs = []
        with self._lock:
            for i in range(L.shape[0]):
                result = self._request.infer({0: np.ascontiguousarray(L[i : i + 1])})
                outputs.append(np.array(result[0], copy=True))
        return torch.from_numpy(np.concatenate(outputs))
