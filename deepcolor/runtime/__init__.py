"""Inference backends: who runs a model's network once the pipeline has its input ready.

``torch`` runs the model itself (any device, any dtype, every model). ``openvino`` runs a graph
exported from the model once per weights (OpenVINO, made for inference on CPUs; cached beside
the other weights, see :mod:`deepcolor.runtime.exports`), for the models it serves exactly. The
pipeline picks one with :func:`create_backend`; models know nothing of backends.
"""

from __future__ import annotations

from .choice import (
    BACKEND_ENV,
    BACKENDS,
    Backend,
    create_backend,
    expected_backend,
    served_by_openvino,
)

__all__ = [
    "BACKENDS",
    "BACKEND_ENV",
    "Backend",
    "create_backend",
    "expected_backend",
    "served_by_openvino",
]
