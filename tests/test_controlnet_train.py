"""ControlNet fine-tuning (``train.controlnet``) on a tiny pipeline and a tiny Hub-layout dataset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_train_support import isolated_run, reset_accelerate  # noqa: F401  (a fixture)
from tiny_diffusion import build_tiny_pipeline

from deepcolor.factory import create_colorizer
from train.controlnet import main
from train.records import read_metrics

ROOT = Path(__file__).resolve().parents[1]
CN_WEIGHTS = Path("controlnet") / "diffusion_pytorch_model.safetensors"


pytestmark = pytest.mark.usefixtures("isolated_run")


def _write_dataset(folder: Path, n_train: int = 6, n_val: int = 2, size: int = 40) -> Path:
    """Colourful two-tone photos in Hub layout (data/*.parquet + README configs)."""
    import datasets
    from PIL import Image

    rng = np.random.default_rng(0)
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=["red barn", "blue lake"]),
            "text": datasets.Value("string"),
        }
    )
    (folder / "data").mkdir(parents=True)
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for split, n in (("train", n_train), ("validation", n_val)):
        photos = []
        for _ in range(n):
            rgb = np.empty((size, size, 3), np.uint8)
            rgb[: size // 2] = rng.integers(0, 256, 3)
            rgb[size // 2 :] = rng.integers(0, 256, 3)
            photos.append(Image.fromarray(rgb))
        rows = {"image": photos, "label": [i % 2 for i in range(n)], "text": ["a photo"] * n}
        name = f"data/{split}-00000-of-00001.parquet"
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(folder / name))
        lines += [f"  - split: {split}", f"    path: {name}"]
    (folder / "README.md").write_text("\n".join([*lines, "---", ""]))
    return folder


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Path:
    return _write_dataset(tmp_path_factory.mktemp("data") / "hub")


def _args(tiny_sd: Path, hub: Path, run: Path, *extra: str) -> list[str]:
    return [
        "--base_model", str(tiny_sd),
        "--dataset", str(hub),
        "--output_dir", str(run),
        "--resolution", "32",
        "--train_batch_size", "2",
        "--learning_rate", "1e-3",
        "--caption_template", "a colour photo of {label}",
        "--empty_prompt_fraction", "0.3",
        "--checkpointing_steps", "1",
        "--checkpoints_total_limit", "2",
        "--validation_steps", "2",
        "--num_validation_images", "2",
        "--validation_inference_steps", "2",
        *extra,
    ]  # fmt: skip


def _checkpoints(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir())


@pytest.mark.slow
def test_trains_checkpoints_resumes_and_loads_into_the_model(tiny_sd, hub, tmp_path, capsys):
    run = tmp_path / "run"
    # 1. two steps through `python -m train.controlnet`, in a fresh process
    cmd = [sys.executable, "-m", "train.controlnet", *_args(tiny_sd, hub, run)]
    cmd += ["--max_train_steps", "2", "--gradient_checkpointing"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_DATASETS_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _checkpoints(run) == ["checkpoint-1", "checkpoint-2"]
    assert (run / "validation" / "step-0000002.png").is_file()
    validation = [r for r in read_metrics(run / "metrics.csv") if r["split"] == "validation"]
    assert validation and validation[0]["ciede2000"] > 0 and validation[0]["psnr"] > 0
    assert [r["step"] for r in read_metrics(run / "metrics.csv") if r["split"] == "train"]

    # 2. resume the finished run to three steps: one more step, the oldest checkpoint pruned
    assert main([*_args(tiny_sd, hub, run), "--max_train_steps", "3", "--resume_from_checkpoint", "latest"]) == 0  # fmt: skip
    assert "resumed from" in capsys.readouterr().out
    assert _checkpoints(run) == ["checkpoint-2", "checkpoint-3"]
    resumed = load_file(str(run / "final" / CN_WEIGHTS))

    # 3. the same three steps without interruption reach the same weights
    reset_accelerate()
    straight = tmp_path / "straight"
    assert main([*_args(tiny_sd, hub, straight), "--max_train_steps", "3"]) == 0
    uninterrupted = load_file(str(straight / "final" / CN_WEIGHTS))
    assert resumed.keys() == uninterrupted.keys()
    for key, value in resumed.items():
        torch.testing.assert_close(value, uninterrupted[key], rtol=1e-5, atol=1e-6)

    # 4. RUN/final is the `controlnet` model: it loads, has learnt, and colourises
    initial = load_file(str(tiny_sd / "controlnet" / "diffusion_pytorch_model.safetensors"))
    assert any(not torch.equal(initial[k], resumed[k]) for k in resumed)
    card = (run / "final" / "README.md").read_text()
    assert "template `a colour photo of {label}`" in card and "3 optimiser steps" in card
    model = create_colorizer("controlnet", weights=str(run / "final"))
    assert model.working_size == 32 and model.base_model == str(tiny_sd)
    state = model.state_dict()
    assert all(torch.equal(state[f"controlnet.{k}"], v) for k, v in resumed.items())
    ab = model.predict(torch.full((1, 1, 40, 40), 60.0), prompt="a colour photo of red barn")
    assert ab.shape == (1, 2, 40, 40) and torch.isfinite(ab).all()


def test_caption_column_and_continuing_from_an_existing_controlnet(tiny_sd, hub, tmp_path):
    run = tmp_path / "run"
    argv = _args(tiny_sd, hub, run, "--max_train_steps", "1", "--caption_column", "text")
    argv += ["--controlnet_model", str(tiny_sd / "controlnet"), "--validation_steps", "100"]
    assert main(argv) == 0
    import json

    config = json.loads((run / "config.json").read_text())
    assert config["run"]["controlnet_init"] == str(tiny_sd / "controlnet")
    assert config["run"]["columns"]["caption"] == "text"
    assert (run / "final" / CN_WEIGHTS).is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--caption_column", "nope"), "available columns"),
        (("--image_column", "pixels"), "--image_column 'pixels'"),
        (("--max_train_samples", "0"), "--max_train_samples must be at least 1"),
        (
            ("--caption_template", "{label}", "--label_column", "text", "--train_batch_size", "9"),
            "fewer than one global batch",
        ),  # fmt: skip
        (("--caption_template", "a photo of {thing}"), "only {label}"),
        (("--resolution", "30"), "multiple of 8"),
    ],
)
def test_clear_errors(tiny_sd, hub, tmp_path, capsys, extra, message):
    assert main([*_args(tiny_sd, hub, tmp_path / "run"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unwritable_output_and_existing_run_are_refused(tiny_sd, hub, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(_args(tiny_sd, hub, blocker / "run")) == 2
    assert "cannot write there" in capsys.readouterr().err
    taken = tmp_path / "taken"
    (taken / "final").mkdir(parents=True)
    assert main(_args(tiny_sd, hub, taken)) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_streams_a_hub_layout_dataset_and_resumes_exactly(tiny_sd, hub, tmp_path, monkeypatch):
    import datasets

    # datasets waits 5 s after each pass over a parquet stream (an Arrow shutdown workaround):
    # nothing to wait for in these few in-process passes
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)
    # --streaming reads the parquet files as it trains (no Arrow copy in the datasets cache);
    # 6 photos in batches of 2: the 4 steps cross the stream's end into a reshuffled second pass
    streamed = ("--streaming", "--validation_steps", "4", "--logging_steps", "1")
    part = tmp_path / "part"
    assert main([*_args(tiny_sd, hub, part, *streamed), "--max_train_steps", "2"]) == 0
    reset_accelerate()
    more = ("--max_train_steps", "4", "--resume_from_checkpoint", "latest")
    assert main([*_args(tiny_sd, hub, part, *streamed), *more]) == 0
    reset_accelerate()
    straight = tmp_path / "straight"
    assert main([*_args(tiny_sd, hub, straight, *streamed), "--max_train_steps", "4"]) == 0

    resumed = load_file(str(part / "final" / CN_WEIGHTS))
    uninterrupted = load_file(str(straight / "final" / CN_WEIGHTS))
    for key, value in resumed.items():
        torch.testing.assert_close(value, uninterrupted[key], rtol=1e-5, atol=1e-6)
    import json

    run = json.loads((straight / "config.json").read_text())["run"]
    assert run["num_train"] is None and run["num_validation"] == 2 and run["max_train_steps"] == 4
    steps = [r["step"] for r in read_metrics(part / "metrics.csv") if r["split"] == "train"]
    assert steps == [1, 2, 3, 4]
    assert "(streamed)" in (straight / "final" / "README.md").read_text()
    assert not list((tmp_path / "hf-cache").rglob("*.arrow"))  # nothing was downloaded whole


def test_streaming_needs_a_step_count(tiny_sd, hub, tmp_path, capsys):
    assert main([*_args(tiny_sd, hub, tmp_path / "run"), "--streaming"]) == 2
    assert "--streaming needs --max_train_steps" in capsys.readouterr().err
