"""The training skeleton both entry points run, in named phases (as diffusers' scripts read).

:meth:`TrainingRun.run` goes through:

1. :meth:`~TrainingRun.set_up_accelerator` - the run folder checked (and cleared with
   ``--overwrite_output_dir``), ``Accelerator`` with mixed precision, gradient accumulation,
   trackers and DDP / FSDP / DeepSpeed as ``accelerate launch`` says, the seed set;
2. :meth:`~TrainingRun.build` - the model and the datasets (each entry point's own);
3. :meth:`~TrainingRun.prepare` - DataLoader, AdamW, the learning-rate schedule and the EMA,
   through ``accelerator.prepare``;
4. :meth:`~TrainingRun.resume` - ``accelerator.load_state`` and where in the data the run stood;
5. :meth:`~TrainingRun.write_run_config` - ``config.json``, ``metrics.csv``, trackers;
6. :meth:`~TrainingRun.train_loop` - epochs of :meth:`~TrainingRun.training_step` (the entry
   point's :meth:`~TrainingRun.compute_loss`), with logging, checkpoints and validation between
   optimiser steps;
7. :meth:`~TrainingRun.finish` - ``RUN/final`` (the entry point's :meth:`~TrainingRun.save_final`)
   and, with ``--push_to_hub``, the upload.

A subclass fills in :meth:`build`, :meth:`compute_loss`, :meth:`result_module`,
:meth:`validate`, :meth:`run_facts` and :meth:`save_final`. A checkpoint holds the weights,
optimiser, schedule, EMA, every process's random states and the position in the data (whose
random choices are seeded by seed, epoch and index), so a resumed run repeats exactly what an
uninterrupted one would have done.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepcolor.errors import DeepColorError

from . import checkpoints as ckpt
from .errors import TrainingError
from .records import MetricsLog, hardware, write_json


def lr_lambda(kind: str, warmup: int, total: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate after ``step`` scheduler steps."""

    def constant(step: int) -> float:
        return min(1.0, (step + 1) / warmup) if warmup else 1.0

    def decayed(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    return constant if kind == "constant" else decayed


def build_lr_scheduler(optimizer, args, max_steps: int, num_processes: int):
    """LambdaLR from --lr_scheduler / --lr_warmup_steps (not yet passed to accelerator.prepare).

    An AcceleratedScheduler steps once per process per optimiser step, so the step counts are
    scaled by the number of processes.
    """
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lr_lambda(
            args.lr_scheduler,
            args.lr_warmup_steps * num_processes,
            max_steps * num_processes,
        ),
    )


def versions() -> dict[str, str]:
    """Installed versions of the packages a run depends on (for ``config.json``)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("deepcolor", "torch", "accelerate", "datasets", "diffusers"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "unknown"
    return out


def push_to_hub(folder: Path, repo_id: str, private: bool) -> str:
    """Upload ``RUN/final``; the URL of the repository."""
    from huggingface_hub import HfApi

    try:
        api = HfApi()
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message="DeepColor run")
        return str(url)
    except Exception as exc:  # offline, no token, no rights: all end the same way
        raise TrainingError(
            f"--push_to_hub: could not upload to {repo_id!r} ({type(exc).__name__}: {exc}). "
            f"The weights are saved in {folder}; upload them later with "
            f"`hf upload {repo_id} {folder}`"
        ) from None


class TrainingRun:
    """One training run, phase by phase; subclasses supply the model-specific steps."""

    #: the command a user types, for config.json and the model card
    entry_point = "accelerate launch -m train"
    #: validate before the first step (cheap for feed-forward models, not for diffusion)
    validate_at_start = True
    #: the progress bar's label
    progress_label = "train"

    def __init__(self, args, argv: Sequence[str] | None = None) -> None:
        self.args = args
        given = list(argv) if argv is not None else sys.argv[1:]
        self.command = f"{self.entry_point} {shlex.join(given)}"
        self.output_dir = Path(args.output_dir).expanduser().absolute()
        self.ema = None
        self.metrics_log: MetricsLog | None = None
        self.last_validation: dict[str, float] = {}  # main process only
        self.validated_at = -1  # the step of the latest validation, known to every process
        self.checkpointed_at = -1
        self.micro_batch = 0  # micro-batches since the last optimiser step

    # --- the phases ------------------------------------------------------------------------

    def run(self) -> Path:
        """Every phase in order; returns ``RUN/final``."""
        self.check()
        self.set_up_accelerator()
        self.build()
        self.prepare()
        self.resume()
        self.write_run_config()
        self.train_loop()
        return self.finish()

    def check(self) -> None:
        """Refusals that need no accelerator, model or data."""
        if self.args.push_to_hub and os.environ.get("HF_HUB_OFFLINE") == "1":
            raise TrainingError(
                "--push_to_hub: HF_HUB_OFFLINE=1 is set, so nothing can be uploaded; unset it "
                "(and log in with `hf auth login`) or drop --push_to_hub and upload RUN/final "
                "later"
            )

    def set_up_accelerator(self) -> None:
        from accelerate import Accelerator
        from accelerate.utils import (
            DataLoaderConfiguration,
            DistributedDataParallelKwargs,
            DistributedType,
            ProjectConfiguration,
            set_seed,
        )

        args, output_dir = self.args, self.output_dir
        # `accelerate launch --multi_gpu` on a machine without GPUs: data parallel over CPU
        # processes (gloo) rather than N unaware copies of a single-process run
        cpu_ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
        try:
            accelerator = Accelerator(
                cpu=cpu_ddp,
                gradient_accumulation_steps=args.gradient_accumulation_steps,
                mixed_precision=args.mixed_precision,
                log_with=None if args.report_to == "none" else args.report_to,
                project_config=ProjectConfiguration(
                    project_dir=str(output_dir), logging_dir=str(output_dir / "logs")
                ),
                dataloader_config=DataLoaderConfiguration(
                    use_seedable_sampler=True, data_seed=args.seed
                ),
                kwargs_handlers=[
                    DistributedDataParallelKwargs(
                        find_unused_parameters=args.ddp_find_unused_parameters
                    )
                ],
            )
        except (ValueError, RuntimeError) as exc:
            raise TrainingError(f"cannot set up accelerate: {exc}") from None
        self.accelerator, self.main = accelerator, accelerator.is_main_process
        ckpt.prepare_output_dir(output_dir, args, accelerator.process_index)
        self.resume_from = ckpt.resolve_resume(output_dir, args.resume_from_checkpoint)
        accelerator.wait_for_everyone()  # every process has checked before the main one deletes
        if self.main and args.overwrite_output_dir and self.resume_from is None:
            ckpt.clear_run(output_dir)
        accelerator.wait_for_everyone()
        sharded = (DistributedType.FSDP, DistributedType.DEEPSPEED)
        self.sharded = accelerator.distributed_type in sharded
        if self.sharded and getattr(args, "ema_decay", None) is not None:
            raise TrainingError("--ema_decay is not supported with FSDP or DeepSpeed; use DDP")
        set_seed(args.seed)

    def build(self) -> None:
        """Set ``self.module`` (what trains, passed to ``accelerator.prepare``) and
        ``self.data`` (a :class:`train.data.TrainData`)."""
        raise NotImplementedError

    def prepare(self) -> None:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
        from torch.utils.data import DataLoader

        args, accelerator = self.args, self.accelerator
        num_train = self.data.num_train
        streaming = num_train is None
        processes = accelerator.num_processes
        self.per_step_images = args.train_batch_size * processes * args.gradient_accumulation_steps
        if not streaming and num_train < args.train_batch_size * processes:
            raise TrainingError(
                f"only {num_train} training photos, fewer than one global batch of "
                f"{args.train_batch_size} x {processes} process(es); lower --train_batch_size"
            )
        loader = DataLoader(
            self.data.train,
            batch_size=args.train_batch_size,
            shuffle=not streaming,
            drop_last=True,
            num_workers=args.dataloader_num_workers,
            # respawning workers each epoch costs seconds at GPU speeds; the map-style dataset's
            # epoch is shared with them (a stream's shuffle epoch is not: respawn those)
            persistent_workers=args.dataloader_num_workers > 0 and not streaming,
            pin_memory=accelerator.device.type == "cuda",
        )
        optimizer = torch.optim.AdamW(
            [p for p in self.module.parameters() if p.requires_grad],
            lr=args.learning_rate,
            betas=(args.adam_beta1, args.adam_beta2),
            eps=args.adam_epsilon,
            weight_decay=args.weight_decay,
        )
        self.module, self.optimizer, self.loader = accelerator.prepare(
            self.module, optimizer, loader
        )
        if streaming:
            self.updates_per_epoch, self.num_epochs = None, sys.maxsize
            self.max_steps = args.max_train_steps
        else:
            batches = len(self.loader)
            self.updates_per_epoch = max(1, math.ceil(batches / args.gradient_accumulation_steps))
            self.max_steps = args.max_train_steps or args.num_train_epochs * self.updates_per_epoch
            self.num_epochs = math.ceil(self.max_steps / self.updates_per_epoch)
        self.scheduler = accelerator.prepare(
            build_lr_scheduler(self.optimizer, args, self.max_steps, processes)
        )
        if getattr(args, "ema_decay", None) is not None:
            self.ema = AveragedModel(
                self.result_module(),
                multi_avg_fn=get_ema_multi_avg_fn(args.ema_decay),
                use_buffers=True,
            )
            accelerator.register_for_checkpointing(self.ema)

    def resume(self) -> None:
        self.state = ckpt.TrainState()
        if self.resume_from is not None:
            self.accelerator.load_state(str(self.resume_from))
            self.state = ckpt.read_state(self.resume_from)
            epoch_done = self.updates_per_epoch is not None and self.state.batches_in_epoch >= len(
                self.loader
            )
            if epoch_done:
                self.state.epoch, self.state.batches_in_epoch = self.state.epoch + 1, 0
            self.checkpointed_at = self.state.global_step
            self.accelerator.print(
                f"resumed from {self.resume_from} at step {self.state.global_step}"
            )
        elif self.args.resume_from_checkpoint:
            self.accelerator.print(f"no checkpoint in {self.output_dir}; starting a new run")

    def write_run_config(self) -> None:
        args, accelerator, data = self.args, self.accelerator, self.data
        if self.main:
            run = {
                "command": self.command,
                **self.run_facts(),
                "columns": vars(data.columns),
                "num_train": data.num_train,
                "num_validation": data.num_validation,
                "dropped_by_min_colourfulness": data.num_filtered,
                "num_processes": accelerator.num_processes,
                "mixed_precision": accelerator.mixed_precision,
                "global_batch_size": self.per_step_images,
                "max_train_steps": self.max_steps,
                "updates_per_epoch": self.updates_per_epoch,
                "hardware": hardware(),
                "resumed_from": str(self.resume_from) if self.resume_from else None,
                "versions": versions(),
            }
            write_json(self.output_dir / "config.json", {"args": vars(args), "run": run})
            resume_step = self.state.global_step if self.resume_from else None
            self.metrics_log = MetricsLog(self.output_dir / "metrics.csv", resume_step)
        if args.report_to != "none":
            tracker_config = {
                k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                for k, v in vars(args).items()
            }
            accelerator.init_trackers(args.tracker_project_name, config=tracker_config)

    def train_loop(self) -> None:
        from tqdm.auto import tqdm

        args = self.args
        self.started_at = time.perf_counter()
        self.progress = tqdm(
            total=self.max_steps,
            initial=self.state.global_step,
            desc=self.progress_label,
            unit="step",
            disable=not self.main,
            dynamic_ncols=True,
        )
        if self.resume_from is None and self.validate_at_start and args.validation_steps > 0:
            self.run_validation(0)
        self.module.train()
        self.window_loss = torch.zeros((), device=self.accelerator.device)
        self.window_batches, self.window_step = 0, self.state.global_step
        self.window_start = time.perf_counter()
        for epoch in range(self.state.epoch, self.num_epochs):
            if self.state.global_step >= self.max_steps or self.train_epoch(epoch):
                break
        self.progress.close()
        step = self.state.global_step
        if args.checkpointing_steps and self.checkpointed_at != step:
            self.save_checkpoint(step)  # lets a later, longer run resume from the very end
        if self.validated_at != step:
            self.run_validation(step)

    def finish(self) -> Path:
        final_dir = self.output_dir / "final"
        self.accelerator.wait_for_everyone()
        self.save_final(final_dir)
        self.accelerator.wait_for_everyone()
        self.accelerator.end_training()
        args = self.args
        if self.main and args.push_to_hub:
            repo_id = args.hub_model_id or self.output_dir.name
            url = push_to_hub(final_dir, repo_id, args.hub_private)
            self.accelerator.print(f"pushed to {url}")
        return final_dir

    # --- inside the loop -------------------------------------------------------------------

    def train_epoch(self, epoch: int) -> bool:
        """One pass over the data (from where a resumed run stood); True once training is done."""
        state = self.state
        if epoch != state.epoch:
            state.epoch, state.batches_in_epoch = epoch, 0
        self.loader.set_epoch(epoch)
        self.data.train.set_epoch(epoch)
        batches = self.loader
        if state.batches_in_epoch:
            batches = self.accelerator.skip_first_batches(self.loader, state.batches_in_epoch)
        for batch in batches:
            loss = self.training_step(batch)
            state.batches_in_epoch += 1
            self.window_loss += loss.detach().float()
            self.window_batches += 1
            if not self.accelerator.sync_gradients:
                continue
            state.global_step += 1
            self.micro_batch = 0
            self.after_optimizer_step(state.global_step)
            if state.global_step >= self.max_steps:
                return True
        return False

    def training_step(self, batch: dict[str, Any]) -> torch.Tensor:
        """Forward, backward, clipping and the optimiser step of one micro-batch."""
        accelerator, args = self.accelerator, self.args
        with accelerator.accumulate(self.module):
            loss = self.compute_loss(batch)
            accelerator.backward(loss)
            if accelerator.sync_gradients and args.max_grad_norm > 0:
                accelerator.clip_grad_norm_(self.module.parameters(), args.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.micro_batch += 1
        return loss

    def compute_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """The loss of one collated micro-batch (uint8 ``rgb`` and the rest, on the device)."""
        raise NotImplementedError

    def after_optimizer_step(self, step: int) -> None:
        """EMA, logging, then checkpoint and validation when due."""
        args = self.args
        if self.ema is not None:
            self.ema.update_parameters(self.result_module())
        self.progress.update(1)
        if step % args.logging_steps == 0 or step == self.max_steps:
            self.log_window(step)
        paused = time.perf_counter()  # images/s counts training, not saving or validating
        if args.checkpointing_steps and step % args.checkpointing_steps == 0:
            self.save_checkpoint(step)
        if args.validation_steps and step % args.validation_steps == 0:
            self.run_validation(step)
        self.window_start += time.perf_counter() - paused

    def wall(self) -> float:
        """Training time so far, resumed parts of the run included."""
        return self.state.wall_seconds + time.perf_counter() - self.started_at

    def log_window(self, step: int) -> None:
        """The mean loss, learning rate and speed since the last row, to metrics.csv and trackers."""
        accelerator = self.accelerator
        mean_loss = accelerator.reduce(self.window_loss / self.window_batches, "mean").item()
        if not math.isfinite(mean_loss):
            raise TrainingError(
                f"the loss became {mean_loss} at step {step}; lower --learning_rate, "
                "set --max_grad_norm, or use bf16 rather than fp16"
            )
        elapsed = time.perf_counter() - self.window_start
        speed = (step - self.window_step) * self.per_step_images / max(elapsed, 1e-9)
        lr = self.scheduler.get_last_lr()[0]
        if self.main:
            self.metrics_log.write(
                step=step,
                epoch=self.state.epoch,
                split="train",
                loss=mean_loss,
                lr=lr,
                images_per_s=speed,
                wall_s=self.wall(),
            )
        accelerator.log(
            {"train/loss": mean_loss, "train/lr": lr, "train/images_per_s": speed}, step=step
        )
        self.progress.set_postfix(loss=f"{mean_loss:.4g}", img_s=f"{speed:.3g}")
        self.window_loss.zero_()
        self.window_batches, self.window_start, self.window_step = 0, time.perf_counter(), step

    def save_checkpoint(self, step: int) -> None:
        accelerator = self.accelerator
        if self.main:
            ckpt.prune_checkpoints(self.output_dir, self.args.checkpoints_total_limit)
        accelerator.wait_for_everyone()
        folder = ckpt.checkpoint_dir(self.output_dir, step)
        accelerator.save_state(str(folder))
        if self.main:
            state = self.state
            ckpt.write_state(
                folder, ckpt.TrainState(step, state.epoch, state.batches_in_epoch, self.wall())
            )
        accelerator.wait_for_everyone()
        self.checkpointed_at = step

    def run_validation(self, step: int) -> None:
        """The entry point's :meth:`validate`, recorded in metrics.csv, trackers and the log."""
        self.validated_at = step
        results, grid = self.validate(step, self.grid_path(step) if self.main else None)
        if self.main and results:
            self.last_validation = results
            self.metrics_log.write(step=step, epoch=self.state.epoch, split="validation", **results)
            self.accelerator.log({f"validation/{k}": v for k, v in results.items()}, step=step)
            if grid is not None and self.args.report_to == "tensorboard":
                tracker = self.accelerator.get_tracker("tensorboard", unwrap=True)
                tracker.add_image("validation/grid", grid, step, dataformats="HWC")
            scores = ", ".join(f"{k} {v:.4g}" for k, v in results.items())
            self.progress.write(f"step {step}: validation {scores}")
        self.accelerator.wait_for_everyone()

    def grid_path(self, step: int) -> Path:
        return self.output_dir / "validation" / f"step-{step:07d}.png"

    # --- what each entry point supplies ------------------------------------------------------

    def result_module(self) -> nn.Module:
        """The trained network itself (unwrapped): what EMA averages and RUN/final holds."""
        raise NotImplementedError

    def validate(
        self, step: int, grid_path: Path | None
    ) -> tuple[dict[str, float], np.ndarray | None]:
        """Scores on the held-out photos and the grid saved to ``grid_path`` (main process);
        ``({}, None)`` where a process does not validate."""
        raise NotImplementedError

    def run_facts(self) -> dict[str, Any]:
        """What config.json records about the model besides the shared facts and the data's."""
        return {}

    def save_final(self, folder: Path) -> None:
        """Write RUN/final (weights and model card); called on every process."""
        raise NotImplementedError


def run_entry_point(
    label: str,
    parse_args: Callable[[Sequence[str] | None], Any],
    train: Callable[[Any, Sequence[str] | None], Path],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse, train, and turn DeepColor errors into one line on stderr (exit 2)."""
    try:
        args = parse_args(argv)
        train(args, argv)
    except DeepColorError as exc:
        print(f"{label}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{label}: interrupted; resume with --resume_from_checkpoint latest", file=sys.stderr)
        return 130
    return 0
