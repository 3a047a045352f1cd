"""Data parallel: a 2-process ``accelerate launch`` on CPU (gloo) equals a 1-process run.

``accelerate launch --multi_gpu --num_processes 2`` starts two processes through torchrun; on a
machine without GPUs ``train`` sets accelerate up on the CPU, so they talk over gloo. Each
process takes half of every global batch, DDP averages the gradients, and only the main process
writes the run folder.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from test_train_support import (
    HERE,
    read_config,
    reset_accelerate,
    tiny_args,
    tiny_models_registered,
    write_hub_layout,
)

from train.loop import main
from train.records import read_metrics


@pytest.mark.slow
def test_two_process_cpu_run_matches_one_process_run(tmp_path, monkeypatch):
    import datasets

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    hub = write_hub_layout(tmp_path / "hub", n_train=16, n_val=4)
    common = ("--max_train_steps", "6", "--validation_steps", "3", "--checkpointing_steps", "3")

    two = tmp_path / "two"
    argv = tiny_args(hub, two, *common, "--import_modules", "tiny_models_worker")
    argv[argv.index("--train_batch_size") + 1] = "2"  # per process: global batch 4
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    launcher += ["--num_processes", "2", "--num_machines", "1", "--main_process_port", "0"]
    launcher += ["--mixed_precision", "no", "--dynamo_backend", "no", "-m", "train"]
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "HF_DATASETS_CACHE": str(cache),
        "CUDA_VISIBLE_DEVICES": "",
    }
    done = subprocess.run(
        [*launcher, *argv], cwd=HERE.parent, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]

    one = tmp_path / "one"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reset_accelerate()
        with tiny_models_registered():
            assert main(tiny_args(hub, one, *common)) == 0  # batch 4 in one process
    finally:
        reset_accelerate()
        torch.set_num_threads(threads)

    run = read_config(two)["run"]
    assert run["num_processes"] == 2 and run["global_batch_size"] == 4
    a, b = (
        load_file(str(one / "final/model.safetensors")),
        load_file(str(two / "final/model.safetensors")),
    )
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    # the main process alone wrote: one row per step, one grid per validation, one card
    rows = read_metrics(two / "metrics.csv")
    assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]
    one_losses = [r["loss"] for r in read_metrics(one / "metrics.csv") if r["split"] == "train"]
    two_losses = [r["loss"] for r in rows if r["split"] == "train"]
    torch.testing.assert_close(
        torch.tensor(two_losses), torch.tensor(one_losses), rtol=1e-4, atol=1e-6
    )
    assert sorted(p.name for p in (two / "validation").iterdir()) == [
        "step-0000000.png",
        "step-0000003.png",
        "step-0000006.png",
    ]
    # both processes' RNG states are checkpointed; nothing else is duplicated
    names = sorted(p.name for p in (two / "checkpoints" / "checkpoint-6").iterdir())
    assert "random_states_0.pkl" in names and "random_states_1.pkl" in names
    assert not list(two.glob(".write-test-*"))
