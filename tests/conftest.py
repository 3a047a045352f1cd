"""Test-wide settings: offline, CPU, quiet; where the evaluation data folder is."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Models run through torch in the suite (an OpenVINO export takes tens of seconds per model);
# tests/test_runtime.py checks the OpenVINO backend and the automatic choice with its own cache.
os.environ.setdefault("DEEPCOLOR_BACKEND", "torch")

import shutil  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: the data folder: DEEPCOLOR_EVAL_DATA when set, else the CI layout (beside the clone)
EVAL_DATA = Path(os.environ.get("DEEPCOLOR_EVAL_DATA") or ROOT.parent / "shared" / "data")


@pytest.fixture(autouse=True)
def _seeded_random_draws():
    """Every test draws the same random inputs on every run, so a rare draw cannot fail CI once
    and pass the next time."""
    import random

    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The evaluation data folder (``DEEPCOLOR_EVAL_DATA``; in CI ``../shared/data``)."""
    if not EVAL_DATA.is_dir():
        pytest.skip(f"no evaluation data folder at {EVAL_DATA} (set DEEPCOLOR_EVAL_DATA)")
    return EVAL_DATA


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request, template, tmp_path):
    """(study folder, database URL): a fresh copy of the module's prepared ``template`` study
    on SQLite, and on PostgreSQL when ``DATABASE_URL_TEST`` is set (CI sets it)."""
    folder = tmp_path / "S"
    shutil.copytree(template, folder)
    if request.param == "sqlite":
        yield folder, f"sqlite:///{folder}/study.sqlite"
        return
    url = os.environ.get("DATABASE_URL_TEST")
    if not url:
        pytest.skip("DATABASE_URL_TEST is not set (CI sets it to its PostgreSQL server)")
    from study.simulate import postgres_schema

    with postgres_schema(url) as scoped:
        yield folder, scoped
