"""The one training loop of every feed-forward colouriser (``accelerate launch -m train``).

The loop knows nothing about any model: it builds one through the registry and minimises its
own ``training_loss(batch)``. Accelerate does the distribution (DDP, FSDP, DeepSpeed), mixed
precision, gradient accumulation, checkpoints and trackers.
"""

from __future__ import annotations

import copy
import math
import os
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepcolor.errors import DeepColorError

from . import checkpoints as ckpt
from .config import parse_args
from .errors import TrainingError
from .records import MetricsLog, hardware, model_card, write_json

SAVE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class LossModule(nn.Module):
    """Wraps a colouriser so that ``forward(batch)`` is its ``training_loss``.

    DistributedDataParallel only synchronises gradients for work done through ``forward``, so
    the loss must be computed there, not through a side method of the wrapped model.
    """

    def __init__(self, colorizer: nn.Module) -> None:
        super().__init__()
        self.colorizer = colorizer

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.colorizer.training_loss(batch)


# ---------------------------------------------------------------------------------------------
# checks before anything heavy happens


def import_modules(names: Sequence[str]) -> None:
    """``--import_modules``: user modules that register their own colourisers."""
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise TrainingError(f"--import_modules: cannot import {name!r} ({exc})") from None


def check_model(name: str):
    """The registry entry of a model this loop can train (clear errors otherwise)."""
    from deepcolor.registry import colorizer_info

    info = colorizer_info(name)  # UnknownModel names the choices
    if not info.trainable:
        raise TrainingError(f"model {name!r} has nothing to train ({info.summary})")
    if "prompt" in info.needs or name == "controlnet":
        raise TrainingError(
            f"model {name!r} is a diffusion model: train it with "
            "`accelerate launch -m train.controlnet ...`"
        )
    return info


def _check_push(args) -> None:
    if args.push_to_hub and os.environ.get("HF_HUB_OFFLINE") == "1":
        raise TrainingError(
            "--push_to_hub: HF_HUB_OFFLINE=1 is set, so nothing can be uploaded; unset it (and "
            "log in with `hf auth login`) or drop --push_to_hub and upload RUN/final later"
        )


def build_model(args):
    """``create_colorizer(--model, weights=--init_weights, **--model_kwargs)``."""
    from deepcolor.models.base import Colorizer
    from deepcolor.registry import create_colorizer

    try:
        model = create_colorizer(args.model, weights=args.init_weights, **args.model_kwargs)
    except TypeError as exc:
        raise TrainingError(f"--model_kwargs {args.model_kwargs}: {exc}") from None
    if type(model).training_loss is Colorizer.training_loss:
        raise TrainingError(f"model {args.model!r} defines no training_loss: nothing to train")
    if not any(p.requires_grad for p in model.parameters()):
        raise TrainingError(f"model {args.model!r} has no trainable parameters")
    return model


def lr_lambda(kind: str, warmup: int, total: int):
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


def _save_final(model: nn.Module, folder: Path, dtype: torch.dtype) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    final = copy.deepcopy(model).cpu().to(dtype=dtype)
    if hasattr(final, "save_package_weights"):
        final.save_package_weights = False  # frozen parts an installed package provides
    final.save_pretrained(str(folder))


def _push(folder: Path, repo_id: str, private: bool) -> str:
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


# ---------------------------------------------------------------------------------------------
# the run


def train(args, argv: Sequence[str] | None = None) -> Path:
    """Run training as configured by ``args`` (see :mod:`train.config`); returns ``RUN/final``."""
    from accelerate import Accelerator
    from accelerate.utils import (
        DataLoaderConfiguration,
        DistributedDataParallelKwargs,
        DistributedType,
        ProjectConfiguration,
        set_seed,
    )
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from .data import build_datasets, to_lab_batch
    from .validation import validate

    import_modules(args.import_modules)
    info = check_model(args.model)
    _check_push(args)
    output_dir = Path(args.output_dir).expanduser().absolute()
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
    ckpt.prepare_output_dir(output_dir, args, accelerator.process_index)
    resume_from = ckpt.resolve_resume(output_dir, args.resume_from_checkpoint)
    accelerator.wait_for_everyone()  # every process has checked before the main one deletes
    if accelerator.is_main_process and args.overwrite_output_dir and resume_from is None:
        ckpt.clear_run(output_dir)
    accelerator.wait_for_everyone()
    main_process = accelerator.is_main_process
    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    if sharded and args.ema_decay is not None:
        raise TrainingError("--ema_decay is not supported with FSDP or DeepSpeed; use DDP")

    set_seed(args.seed)
    colorizer = build_model(args)
    conditions = tuple(c for c in ("reference",) if c in info.needs or c in info.accepts)
    with accelerator.main_process_first():  # the main process fills the datasets cache first
        data = build_datasets(args, reference="reference" in conditions)

    streaming = data.num_train is None
    per_step_images = (
        args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    )
    if not streaming and data.num_train < args.train_batch_size * accelerator.num_processes:
        raise TrainingError(
            f"only {data.num_train} training photos, fewer than one global batch of "
            f"{args.train_batch_size} x {accelerator.num_processes} process(es); lower "
            "--train_batch_size"
        )
    train_loader = DataLoader(
        data.train,
        batch_size=args.train_batch_size,
        shuffle=not streaming,
        drop_last=True,
        num_workers=args.dataloader_num_workers,
        # respawning workers each epoch costs seconds at GPU speeds; the map-style dataset's
        # epoch is shared with them (a stream's shuffle epoch is not: respawn those)
        persistent_workers=args.dataloader_num_workers > 0 and not streaming,
        pin_memory=accelerator.device.type == "cuda",
    )
    wrapper = LossModule(colorizer)
    optimizer = torch.optim.AdamW(
        [p for p in colorizer.parameters() if p.requires_grad],
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        weight_decay=args.weight_decay,
    )
    wrapper, optimizer, train_loader = accelerator.prepare(wrapper, optimizer, train_loader)

    if streaming:
        updates_per_epoch = None
        max_steps = args.max_train_steps
        num_epochs = sys.maxsize
    else:
        updates_per_epoch = max(1, math.ceil(len(train_loader) / args.gradient_accumulation_steps))
        max_steps = args.max_train_steps or args.num_train_epochs * updates_per_epoch
        num_epochs = math.ceil(max_steps / updates_per_epoch)
    scheduler = accelerator.prepare(
        build_lr_scheduler(optimizer, args, max_steps, accelerator.num_processes)
    )

    ema = None
    if args.ema_decay is not None:
        ema = AveragedModel(
            accelerator.unwrap_model(wrapper).colorizer,
            multi_avg_fn=get_ema_multi_avg_fn(args.ema_decay),
            use_buffers=True,
        )
        accelerator.register_for_checkpointing(ema)

    # --- resume -------------------------------------------------------------------------------
    run_state = ckpt.TrainState()
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        run_state = ckpt.read_state(resume_from)
        if updates_per_epoch is not None and run_state.batches_in_epoch >= len(train_loader):
            run_state.epoch, run_state.batches_in_epoch = run_state.epoch + 1, 0
        accelerator.print(f"resumed from {resume_from} at step {run_state.global_step}")
    elif args.resume_from_checkpoint:
        accelerator.print(f"no checkpoint in {output_dir}; starting a new run")

    command = "accelerate launch -m train " + shlex.join(
        list(argv) if argv is not None else sys.argv[1:]
    )
    metrics_log = None
    if main_process:
        write_json(
            output_dir / "config.json",
            {
                "args": vars(args),
                "run": {
                    "command": command,
                    "model_class": f"{type(colorizer).__module__}.{type(colorizer).__name__}",
                    "parameters": sum(p.numel() for p in colorizer.parameters()),
                    "num_processes": accelerator.num_processes,
                    "mixed_precision": accelerator.mixed_precision,
                    "global_batch_size": per_step_images,
                    "max_train_steps": max_steps,
                    "updates_per_epoch": updates_per_epoch,
                    "num_train": data.num_train,
                    "num_validation": data.num_validation,
                    "dropped_by_min_colourfulness": data.num_filtered,
                    "columns": vars(data.columns),
                    "hardware": hardware(),
                    "resumed_from": str(resume_from) if resume_from else None,
                    "versions": _versions(),
                },
            },
        )
        metrics_log = MetricsLog(
            output_dir / "metrics.csv", run_state.global_step if resume_from else None
        )
    if args.report_to != "none":
        tracker_config = {
            k: (v if isinstance(v, (int, float, str, bool)) else str(v))
            for k, v in vars(args).items()
        }
        accelerator.init_trackers(args.tracker_project_name, config=tracker_config)

    session_start = time.perf_counter()
    last_val: dict[str, float] = {}  # main process only
    validated_at = [-1]  # the step of the latest validation, known to every process

    def wall() -> float:
        return run_state.wall_seconds + time.perf_counter() - session_start

    def run_validation(step: int) -> None:
        nonlocal last_val
        validated_at[0] = step
        # a sharded model's forward is collective: then every process validates alike
        if (main_process or sharded) and data.num_validation:
            model = ema.module if ema is not None else accelerator.unwrap_model(wrapper).colorizer
            results, grid = validate(
                model,
                data.validation,
                device=accelerator.device,
                batch_size=args.train_batch_size,
                seed=args.seed,
                conditions=conditions,
                num_grid_images=args.num_validation_images,
                grid_path=output_dir / "validation" / f"step-{step:07d}.png"
                if main_process
                else None,
            )
        if main_process and data.num_validation:
            last_val = results
            metrics_log.write(step=step, epoch=run_state.epoch, split="validation", **results)
            accelerator.log({f"validation/{k}": v for k, v in results.items()}, step=step)
            if grid is not None and args.report_to == "tensorboard":
                tracker = accelerator.get_tracker("tensorboard", unwrap=True)
                tracker.add_image("validation/grid", grid, step, dataformats="HWC")
            progress.write(
                f"step {step}: validation " + ", ".join(f"{k} {v:.4g}" for k, v in results.items())
            )
        accelerator.wait_for_everyone()

    def save_checkpoint(step: int) -> None:
        if main_process:
            ckpt.prune_checkpoints(output_dir, args.checkpoints_total_limit)
        accelerator.wait_for_everyone()
        folder = ckpt.checkpoint_dir(output_dir, step)
        accelerator.save_state(str(folder))
        if main_process:
            ckpt.write_state(
                folder,
                ckpt.TrainState(step, run_state.epoch, run_state.batches_in_epoch, wall()),
            )
        accelerator.wait_for_everyone()

    progress = tqdm(
        total=max_steps,
        initial=run_state.global_step,
        desc=f"train {args.model}",
        unit="step",
        disable=not main_process,
        dynamic_ncols=True,
    )
    if resume_from is None and args.validation_steps > 0:
        run_validation(0)

    wrapper.train()
    window_loss = torch.zeros((), device=accelerator.device)
    window_batches, window_start, window_step = 0, time.perf_counter(), run_state.global_step
    last_checkpoint = run_state.global_step if resume_from else -1
    step_done = run_state.global_step >= max_steps
    for epoch in range(run_state.epoch, num_epochs):
        if step_done:
            break
        if epoch != run_state.epoch:
            run_state.epoch, run_state.batches_in_epoch = epoch, 0
        train_loader.set_epoch(epoch)
        data.train.set_epoch(epoch)
        loader = train_loader
        if run_state.batches_in_epoch:
            loader = accelerator.skip_first_batches(train_loader, run_state.batches_in_epoch)
        for batch in loader:
            with accelerator.accumulate(wrapper):
                loss = wrapper(to_lab_batch(batch))
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(wrapper.parameters(), args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            run_state.batches_in_epoch += 1
            window_loss += loss.detach().float()
            window_batches += 1
            if not accelerator.sync_gradients:
                continue
            run_state.global_step += 1
            step = run_state.global_step
            if ema is not None:
                ema.update_parameters(accelerator.unwrap_model(wrapper).colorizer)
            progress.update(1)
            if step % args.logging_steps == 0 or step == max_steps:
                mean_loss = accelerator.reduce(window_loss / window_batches, "mean").item()
                if not math.isfinite(mean_loss):
                    raise TrainingError(
                        f"the loss became {mean_loss} at step {step}; lower --learning_rate, "
                        "set --max_grad_norm, or use bf16 rather than fp16"
                    )
                elapsed = time.perf_counter() - window_start
                speed = (step - window_step) * per_step_images / max(elapsed, 1e-9)
                lr = scheduler.get_last_lr()[0]
                if main_process:
                    metrics_log.write(
                        step=step,
                        epoch=epoch,
                        split="train",
                        loss=mean_loss,
                        lr=lr,
                        images_per_s=speed,
                        wall_s=wall(),
                    )
                accelerator.log(
                    {"train/loss": mean_loss, "train/lr": lr, "train/images_per_s": speed},
                    step=step,
                )
                progress.set_postfix(loss=f"{mean_loss:.4g}", img_s=f"{speed:.0f}")
                window_loss.zero_()
                window_batches, window_start, window_step = 0, time.perf_counter(), step
            paused = time.perf_counter()  # images/s counts training, not saving or validating
            if args.checkpointing_steps and step % args.checkpointing_steps == 0:
                save_checkpoint(step)
                last_checkpoint = step
            if args.validation_steps and step % args.validation_steps == 0:
                run_validation(step)
            window_start += time.perf_counter() - paused
            if step >= max_steps:
                step_done = True
                break
    progress.close()

    step = run_state.global_step
    if args.checkpointing_steps and last_checkpoint != step:
        save_checkpoint(step)  # lets a later, longer run resume from the very end
    if validated_at[0] != step:
        run_validation(step)

    final_dir = output_dir / "final"
    accelerator.wait_for_everyone()
    # FSDP / DeepSpeed hold shards: gather the full weights (collective) into a fresh model
    full_state = accelerator.get_state_dict(wrapper) if sharded else None
    if main_process:
        if ema is not None:
            model = ema.module
        elif sharded:
            model = type(colorizer)(**dict(getattr(colorizer, "_hub_mixin_config", None) or {}))
            prefix = "colorizer."
            model.load_state_dict({k.removeprefix(prefix): v for k, v in full_state.items()})
        else:
            model = accelerator.unwrap_model(wrapper).colorizer
        _save_final(model, final_dir, SAVE_DTYPES[args.save_dtype])
        card = model_card(
            model=args.model,
            command=command,
            args=vars(args) | {"mixed_precision": accelerator.mixed_precision},
            steps=step,
            epochs=step / updates_per_epoch if updates_per_epoch else float("nan"),
            images_seen=step * per_step_images,
            wall_seconds=wall(),
            hardware_line=hardware(),
            num_processes=accelerator.num_processes,
            final_metrics=last_val,
            num_train=data.num_train,
            num_validation=data.num_validation,
        )
        (final_dir / "README.md").write_text(card)
        accelerator.print(f"saved {final_dir} ({step} steps, {wall() / 60:.1f} min)")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if main_process and args.push_to_hub:
        url = _push(final_dir, args.hub_model_id or output_dir.name, args.hub_private)
        accelerator.print(f"pushed to {url}")
    return final_dir


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("deepcolor", "torch", "accelerate", "datasets"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "unknown"
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry: parse, train, turn DeepColor errors into one line on stderr (exit 2)."""
    try:
        args = parse_args(argv)
        train(args, argv)
    except DeepColorError as exc:
        print(f"train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("train: interrupted; resume with --resume_from_checkpoint latest", file=sys.stderr)
        return 130
    return 0
