"""The training loop through its real entry point (``train.loop.main``, what ``-m train`` runs)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train_support import (  # noqa: F401  (isolated_run: a fixture)
    HERE,
    isolated_run,
    read_config,
    reset_accelerate,
    tiny_args,
    write_hub_layout,
    write_imagefolder,
    write_save_to_disk,
)

from deepcolor.factory import create_colorizer
from deepcolor.registry import list_colorizers
from train.loop import main
from train.records import read_metrics

ROOT = HERE.parent


pytestmark = pytest.mark.usefixtures("isolated_run")


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Path:
    return write_hub_layout(tmp_path_factory.mktemp("data") / "hub", n_train=16, n_val=4)


def _run(*argv: str) -> int:
    reset_accelerate()
    return main(list(argv))


def _rows(run: Path, split: str) -> list[dict]:
    return [r for r in read_metrics(run / "metrics.csv") if r["split"] == split]


def test_run_folder_holds_config_metrics_grid_and_a_loadable_final_model(hub, tmp_path):
    run = tmp_path / "run"
    argv = tiny_args(hub, run, "--max_train_steps", "12", "--validation_steps", "6")
    assert _run(*argv, "--report_to", "tensorboard", "--checkpointing_steps", "5") == 0

    config = read_config(run)
    assert config["args"]["max_train_steps"] == 12 and config["run"]["num_train"] == 16
    assert config["run"]["global_batch_size"] == 4 and config["run"]["num_processes"] == 1
    train_rows, val_rows = _rows(run, "train"), _rows(run, "validation")
    assert [r["step"] for r in train_rows] == list(range(1, 13))
    assert all(r["images_per_s"] > 0 and r["lr"] == 0.01 for r in train_rows)
    assert [r["step"] for r in val_rows] == [0, 6, 12]
    # the loss falls, on the training windows and on the held-out photos
    assert val_rows[-1]["loss"] < 0.8 * val_rows[0]["loss"]
    assert sum(r["loss"] for r in train_rows[-3:]) < sum(r["loss"] for r in train_rows[:3])
    assert val_rows[-1]["ciede2000"] < val_rows[0]["ciede2000"]
    assert {p.name for p in (run / "validation").iterdir()} == {
        "step-0000000.png",
        "step-0000006.png",
        "step-0000012.png",
    }
    assert list((run / "logs").rglob("events.out.tfevents.*"))  # TensorBoard
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == [
        "checkpoint-10",
        "checkpoint-12",
        "checkpoint-5",
    ]

    # RUN/final is what `deepcolor ... --model NAME --weights RUN/final` loads
    card = (run / "final" / "README.md").read_text()
    assert "optimiser steps: 12" in card and "--max_train_steps 12" in card and "ciede2000" in card
    model = create_colorizer("tiny-test", weights=str(run / "final"))
    trained = load_file(str(run / "checkpoints" / "checkpoint-12" / "model.safetensors"))
    assert torch.equal(model.body[0].weight, trained["colorizer.body.0.weight"])


def test_resumed_run_equals_uninterrupted_run(hub, tmp_path):
    # cosine schedule with warm-up, EMA, clipping, a worker, checkpoints mid-epoch (4 batches
    # per epoch; step 6 = epoch 1, batch 2) and validation between steps
    common = (
        "--max_train_steps",
        "10",
        "--lr_scheduler",
        "cosine",
        "--lr_warmup_steps",
        "2",
        "--ema_decay",
        "0.9",
        "--max_grad_norm",
        "0.5",
        "--dataloader_num_workers",
        "1",
        "--checkpointing_steps",
        "3",
        "--validation_steps",
        "4",
        "--rotation",
        "10",
    )
    full = tmp_path / "full"
    assert _run(*tiny_args(hub, full, *common)) == 0
    # "interrupted" at step 6: a fresh folder holding only what the run had written by then
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    shutil.copytree(full / "checkpoints" / "checkpoint-6", part / "checkpoints" / "checkpoint-6")
    lines = (full / "metrics.csv").read_text().splitlines()
    (part / "metrics.csv").write_text("\n".join(lines) + "\n")  # later rows must be dropped
    assert _run(*tiny_args(hub, part, *common, "--resume_from_checkpoint", "latest")) == 0

    a = load_file(str(full / "final" / "model.safetensors"))
    b = load_file(str(part / "final" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    # EMA weights (what final holds) differ from the raw ones: EMA really was used
    raw = load_file(str(full / "checkpoints" / "checkpoint-10" / "model.safetensors"))
    assert not torch.allclose(raw["colorizer.body.0.weight"], a["body.0.weight"])
    full_losses = [r["loss"] for r in _rows(full, "train")]
    part_losses = [r["loss"] for r in _rows(part, "train")]
    assert len(part_losses) == 10
    torch.testing.assert_close(torch.tensor(part_losses), torch.tensor(full_losses))
    assert read_config(part)["run"]["resumed_from"].endswith("checkpoint-6")


def test_checkpoints_total_limit_and_resume_latest_extends_a_finished_run(hub, tmp_path):
    run = tmp_path / "run"
    args = ("--checkpointing_steps", "2", "--checkpoints_total_limit", "2")
    assert _run(*tiny_args(hub, run, "--max_train_steps", "6", *args)) == 0
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == [
        "checkpoint-4",
        "checkpoint-6",
    ]
    more = ("--max_train_steps", "8", "--resume_from_checkpoint", "latest")
    assert _run(*tiny_args(hub, run, *args, *more)) == 0
    assert [r["step"] for r in _rows(run, "train")] == list(range(1, 9))
    assert "optimiser steps: 8" in (run / "final" / "README.md").read_text()


def test_accumulation_bf16_fp16_weights_and_fine_tuning(hub, tmp_path):
    run = tmp_path / "run"
    extra = ("--gradient_accumulation_steps", "2", "--mixed_precision", "bf16")
    argv = tiny_args(hub, run, "--max_train_steps", "3", *extra, "--save_dtype", "fp16")
    assert _run(*argv, "--lr_scheduler", "linear", "--weight_decay", "0.01") == 0
    config = read_config(run)
    assert config["run"]["global_batch_size"] == 8 and config["run"]["mixed_precision"] == "bf16"
    assert [r["step"] for r in _rows(run, "train")] == [1, 2, 3]
    stored = load_file(str(run / "final" / "model.safetensors"))
    assert all(t.dtype == torch.float16 for t in stored.values())
    model = create_colorizer("tiny-test", weights=str(run / "final"))
    assert model.body[0].weight.dtype == torch.float32
    # --init_weights starts from RUN/final: the first validation equals final's last one
    tuned = tmp_path / "tuned"
    init = ("--init_weights", str(run / "final"))
    assert _run(*tiny_args(hub, tuned, "--max_train_steps", "1", *init)) == 0
    first = _rows(tuned, "validation")[0]["loss"]
    assert first == pytest.approx(_rows(run, "validation")[-1]["loss"], rel=1e-2)


@pytest.mark.parametrize("layout", ["imagefolder", "save_to_disk", "streaming"])
def test_other_dataset_layouts_train(layout, tmp_path):
    if layout == "imagefolder":
        data, extra = write_imagefolder(tmp_path / "data", n=12), ()
    else:
        data = write_save_to_disk(tmp_path / "data", n_train=12, n_val=4)
        extra = ("--streaming",) if layout == "streaming" else ()
    run = tmp_path / "run"
    assert _run(*tiny_args(data, run, "--max_train_steps", "3", *extra)) == 0
    assert [r["step"] for r in _rows(run, "train")] == [1, 2, 3]
    assert _rows(run, "validation")[-1]["psnr"] > 5


def test_streamed_hub_layout_resumes_like_an_uninterrupted_run(hub, tmp_path, monkeypatch):
    import datasets

    # datasets waits 5 s after each pass over a parquet stream (an Arrow shutdown workaround)
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)
    # 16 photos in batches of 4: step 6 is in the stream's second, reshuffled pass
    streamed = ("--streaming", "--checkpointing_steps", "3", "--validation_steps", "0")
    part, straight = tmp_path / "part", tmp_path / "straight"
    assert _run(*tiny_args(hub, part, *streamed, "--max_train_steps", "3")) == 0
    more = ("--max_train_steps", "6", "--resume_from_checkpoint", "latest")
    assert _run(*tiny_args(hub, part, *streamed, *more)) == 0
    assert _run(*tiny_args(hub, straight, *streamed, "--max_train_steps", "6")) == 0
    a = load_file(str(part / "final" / "model.safetensors"))
    b = load_file(str(straight / "final" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    losses = [[r["loss"] for r in _rows(run, "train")] for run in (part, straight)]
    torch.testing.assert_close(torch.tensor(losses[0]), torch.tensor(losses[1]))
    assert read_config(straight)["run"]["num_train"] is None
    assert not list((tmp_path / "hf-cache").rglob("*.arrow"))  # streamed, not downloaded whole


def test_exemplar_model_gets_references_for_one_epoch(hub, tmp_path):
    run = tmp_path / "run"
    argv = tiny_args(hub, run, "--num_train_epochs", "1", model="tiny-exemplar-test")
    assert _run(*argv, "--validation_steps", "4", "--reference_source", "both") == 0
    assert [r["step"] for r in _rows(run, "validation")] == [0, 4]
    assert read_config(run)["run"]["columns"]["label"] == "label"
    assert read_config(run)["run"]["max_train_steps"] == 4  # 16 photos, batch 4, one epoch


# --- errors: one line on stderr, exit status 2 ----------------------------------------------


def _error(capsys, *argv: str) -> str:
    assert _run(*argv) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("train: error: ") and "Traceback" not in err
    return err.splitlines()[-1]


def test_clear_errors(hub, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    err = _error(capsys, *tiny_args(hub, out, model="no-such-model"))
    assert "unknown model 'no-such-model'" in err and "eccv16" in err
    assert "nothing to train" in _error(capsys, *tiny_args(hub, out, model="gray"))
    err = _error(capsys, *tiny_args(hub, out, "--image_column", "photo"))
    assert "'photo'" in err and "available columns: image, label" in err
    gray = write_hub_layout(tmp_path / "gray", n_train=6, n_val=2, gray=True)
    err = _error(capsys, *tiny_args(gray, out, "--min_colourfulness", "5"))
    assert "no training photo is left" in err
    empty = write_hub_layout(tmp_path / "empty", n_train=0, n_val=0)
    assert "is empty" in _error(capsys, *tiny_args(empty, tmp_path / "out2"))
    (tmp_path / "nothing").mkdir()
    assert "is empty" in _error(capsys, *tiny_args(tmp_path / "nothing", tmp_path / "out2"))
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    err = _error(capsys, *tiny_args(hub, blocker / "run"))
    assert "cannot write there" in err
    err = _error(capsys, *tiny_args(hub, out, "--model_kwargs", '{"depth": 3}'))
    assert "--model_kwargs" in err and "depth" in err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "HF_HUB_OFFLINE=1" in _error(capsys, *tiny_args(hub, out, "--push_to_hub"))


def test_an_existing_run_is_not_silently_mixed_with_a_new_one(hub, tmp_path, capsys):
    run = tmp_path / "run"
    assert _run(*tiny_args(hub, run, "--max_train_steps", "1")) == 0
    assert "already holds a run" in _error(capsys, *tiny_args(hub, run, "--max_train_steps", "1"))
    argv = tiny_args(hub, run, "--max_train_steps", "2", "--overwrite_output_dir")
    assert _run(*argv) == 0
    assert [r["step"] for r in _rows(run, "train")] == [1, 2]


def test_module_entry_point_reports_errors_without_traceback(tmp_path):
    # an option error: found before any model, dataset or accelerate is loaded
    argv = tiny_args(tmp_path, tmp_path / "o", "--crop_scale", "0.9", "0.1")
    done = subprocess.run(
        [sys.executable, "-m", "train", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert (
        done.stderr.strip() == "train: error: --crop_scale needs 0 < MIN <= MAX <= 1 (got 0.9 0.1)"
    )


# --- every registered model ----------------------------------------------------------------

from tiny_models import TINY_KWARGS  # noqa: E402

#: trained by their own entry point (train.controlnet) or test-only
ELSEWHERE = {"controlnet", "tiny-test", "tiny-exemplar-test"}
TRAINABLE = [i.name for i in list_colorizers() if i.trainable and i.name not in ELSEWHERE]


@pytest.mark.parametrize("name", TRAINABLE)
def test_every_registered_trainable_model_learns_through_the_entry_point(name, hub, tmp_path):
    import json

    run = tmp_path / "run"
    kwargs = json.dumps(TINY_KWARGS.get(name, {}))
    # no random crops or flips: every epoch shows the same 16 crops (4 batches), so the mean
    # training loss of the second epoch is comparable with the first one's (seeded: no flakes)
    fixed = ("--no-random_crop", "--no-hflip", "--resolution", "32", "--validation_steps", "8")
    argv = tiny_args(hub, run, "--max_train_steps", "8", "--model_kwargs", kwargs, model=name)
    assert _run(*argv, *fixed, "--learning_rate", "0.005") == 0
    losses = [r["loss"] for r in _rows(run, "train")]
    assert len(losses) == 8 and sum(losses[4:]) < 0.98 * sum(losses[:4]), losses
    val = _rows(run, "validation")
    assert [r["step"] for r in val] == [0, 8] and all(r["psnr"] > 5 for r in val)
    reloaded = create_colorizer(name, weights=str(run / "final"))
    saved = load_file(str(run / "final" / "model.safetensors"))
    state = reloaded.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--logging_steps", "0"), "--logging_steps must be at least 1"),
        (("--validation_steps", "-1"), "--validation_steps cannot be negative"),
        (("--ema_decay", "1.5"), "--ema_decay must lie strictly between 0 and 1"),
        (("--streaming",), "--streaming needs --max_train_steps"),
        (("--validation_fraction", "1"), "--validation_fraction must lie strictly between"),
    ],
)
def test_option_errors_are_caught_before_anything_loads(extra, message, tmp_path):
    from train.config import parse_args
    from train.errors import TrainingError

    with pytest.raises(TrainingError, match=message):
        parse_args(tiny_args(tmp_path, tmp_path / "o", *extra))
    assert not (tmp_path / "o").exists()
