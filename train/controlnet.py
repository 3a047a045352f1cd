"""ControlNet fine-tuning for the ``controlnet`` colouriser (``accelerate launch -m train.controlnet``).

The ControlNet learns to steer a frozen Stable Diffusion towards the colours of real photos:

- conditioning: the photo's gray version (its CIELAB L replicated into gray RGB);
- target: the colour photo itself, through the frozen VAE, with the usual noise-prediction
  objective (:func:`deepcolor.models.controlnet.noise_prediction_loss`);
- text: a caption column, or a template such as ``"a colour photo of {label}"``, with a share of
  empty prompts (``--empty_prompt_fraction``) so the model also colourises without a prompt;
- only the ControlNet trains: it starts as a copy of the base UNet's encoder
  (``--controlnet_model unet``, the default) or from an existing ControlNet (Hub id or folder).

The run folder holds ``config.json`` (arguments), ``metrics.csv``, ``validation/step-N.png``
(rows: gray input, colourised, original), ``checkpoints/checkpoint-N`` (accelerate state) and
``final/``, a ``save_pretrained`` folder of the ``controlnet`` model
(``deepcolor colorize --model controlnet --weights RUN/final ...``).

Every random draw of a step (VAE sampling, noise, timesteps, empty prompts) comes from a
generator seeded by (seed, step, process), and the data order by (seed, epoch), so a resumed run
repeats exactly what an uninterrupted one would have done.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from deepcolor.errors import DeepColorError

from . import checkpoints as ckpt
from .errors import TrainingError
from .loop import build_lr_scheduler

# ---------------------------------------------------------------------------------------------
# arguments


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="accelerate launch -m train.controlnet",
        description="Fine-tune a ControlNet that colourises grayscale photos with Stable Diffusion.",
    )
    g = p.add_argument_group("models")
    g.add_argument(
        "--base_model",
        default=None,
        help="Stable Diffusion 1.x/2.x base (Hub id or diffusers folder); default: "
        "$DEEPCOLOR_SD_MODEL or stable-diffusion-v1-5/stable-diffusion-v1-5",
    )
    g.add_argument(
        "--controlnet_model",
        default="unet",
        help="'unet' (default): a new ControlNet copied from the base UNet; or an existing "
        "ControlNet to continue from (Hub id or folder)",
    )
    g = p.add_argument_group("data")
    g.add_argument("--dataset", required=True, help="Hub dataset id or local folder")
    g.add_argument("--dataset_config", default=None)
    g.add_argument("--train_split", default="train")
    g.add_argument("--validation_split", default="validation")
    g.add_argument("--validation_fraction", type=float, default=0.05)
    g.add_argument("--image_column", default=None, help="default: the first image column")
    g.add_argument("--label_column", default=None, help="default: 'label' when present")
    g.add_argument("--caption_column", default=None, help="a text column to use as prompts")
    g.add_argument(
        "--caption_template",
        default=None,
        help="prompt built from each row, e.g. 'a colour photo of {label}' ({label} is the "
        "label's name); used when there is no --caption_column",
    )
    g.add_argument(
        "--empty_prompt_fraction",
        type=float,
        default=0.1,
        help="share of training prompts replaced by '' (so prompt-free colourisation works)",
    )
    g.add_argument("--resolution", type=int, default=512)
    g.add_argument("--random_crop", action=argparse.BooleanOptionalAction, default=True)
    g.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=True)
    g.add_argument("--max_train_samples", type=int, default=None)
    g.add_argument("--max_validation_samples", type=int, default=64)
    g.add_argument(
        "--min_colourfulness",
        type=float,
        default=None,
        help="drop training photos less colourful than this (gray photos teach desaturation)",
    )
    g.add_argument("--dataloader_num_workers", type=int, default=0)
    g = p.add_argument_group("optimisation")
    g.add_argument("--train_batch_size", type=int, default=4)
    g.add_argument("--gradient_accumulation_steps", type=int, default=1)
    g.add_argument("--max_train_steps", type=int, default=None)
    g.add_argument("--num_train_epochs", type=int, default=1)
    g.add_argument("--learning_rate", type=float, default=1e-5)
    g.add_argument("--lr_scheduler", choices=("constant", "linear", "cosine"), default="constant")
    g.add_argument("--lr_warmup_steps", type=int, default=0)
    g.add_argument("--adam_beta1", type=float, default=0.9)
    g.add_argument("--adam_beta2", type=float, default=0.999)
    g.add_argument("--adam_epsilon", type=float, default=1e-8)
    g.add_argument("--weight_decay", type=float, default=1e-2)
    g.add_argument("--max_grad_norm", type=float, default=1.0)
    g.add_argument("--gradient_checkpointing", action="store_true")
    g.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default=None)
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("run folder")
    g.add_argument("--output_dir", required=True)
    g.add_argument("--overwrite_output_dir", action="store_true")
    g.add_argument("--checkpointing_steps", type=int, default=500)
    g.add_argument("--checkpoints_total_limit", type=int, default=None)
    g.add_argument("--resume_from_checkpoint", default=None, help="'latest' or a folder")
    g.add_argument("--validation_steps", type=int, default=100)
    g.add_argument("--num_validation_images", type=int, default=4)
    g.add_argument("--validation_prompt", default=None, help="default: each photo's caption")
    g.add_argument("--validation_inference_steps", type=int, default=20)
    g.add_argument("--logging_steps", type=int, default=10)
    g.add_argument("--report_to", choices=("none", "tensorboard"), default="none")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    positive = ("resolution", "train_batch_size", "gradient_accumulation_steps", "logging_steps")
    for name in positive + ("checkpointing_steps", "validation_steps"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise TrainingError(f"--{name} must be at least 1 (got {getattr(args, name)})")
    if args.resolution % 8:
        raise TrainingError(f"--resolution must be a multiple of 8 (got {args.resolution})")
    if not 0.0 <= args.empty_prompt_fraction <= 1.0:
        raise TrainingError("--empty_prompt_fraction must lie in [0, 1]")
    if args.checkpoints_total_limit is not None and args.checkpoints_total_limit < 1:
        raise TrainingError("--checkpoints_total_limit must be at least 1")
    if args.caption_template is not None and "{" in args.caption_template:
        try:
            args.caption_template.format(label="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise TrainingError(
                f"--caption_template {args.caption_template!r}: only {{label}} may be used ({exc})"
            ) from None
    return args


# ---------------------------------------------------------------------------------------------
# data


def _label_names(dataset, column: str | None):
    """The label column's ClassLabel names (int -> str), or None."""
    if column is None:
        return None
    feature = (getattr(dataset, "features", None) or {}).get(column)
    return getattr(feature, "names", None)


def captions_for(dataset, columns, template: str | None) -> list[str]:
    """One prompt per row: the caption column, else the template, else ''."""
    if columns.caption:
        return [str(c) for c in dataset[columns.caption]]
    if template is None:
        return [""] * len(dataset)
    if "{label}" in template and columns.label is None:
        raise TrainingError(
            f"--caption_template {template!r} uses {{label}} but the dataset has no label "
            "column; name one with --label_column"
        )
    if columns.label is None:
        return [template] * len(dataset)
    names = _label_names(dataset, columns.label)
    labels = dataset[columns.label]
    return [
        template.format(label=names[int(v)] if names is not None else v).strip() for v in labels
    ]


def build_data(args) -> tuple[Any, Any, dict[str, Any]]:
    """(train dataset, validation dataset, facts) of ``{"rgb", "caption"}`` items."""
    from .data import (
        Augmentation,
        ColorizationDataset,
        colourful_indices,
        decode_images,
        load_dataset_splits,
        resolve_columns,
    )

    train_raw, val_raw = load_dataset_splits(
        args.dataset,
        config=args.dataset_config,
        train_split=args.train_split,
        validation_split=args.validation_split,
        validation_fraction=args.validation_fraction,
        seed=args.seed,
    )
    columns = resolve_columns(train_raw, args.image_column, args.label_column, args.caption_column)
    if args.max_train_samples is not None:
        train_raw = train_raw.select(range(min(args.max_train_samples, len(train_raw))))
    if args.max_validation_samples is not None:
        val_raw = val_raw.select(range(min(args.max_validation_samples, len(val_raw))))
    if len(train_raw) == 0:
        raise TrainingError(f"--dataset {args.dataset}: the training split has no rows")
    augmentation = Augmentation(
        resolution=args.resolution, random_crop=args.random_crop, hflip=args.hflip
    )
    images = decode_images(train_raw, columns.image)
    captions = captions_for(train_raw, columns, args.caption_template)
    dropped = 0
    if args.min_colourfulness is not None:
        keep = colourful_indices(images, args.min_colourfulness)
        dropped = len(images) - len(keep)
        images, captions = [images[i] for i in keep], [captions[i] for i in keep]
        if not images:
            raise TrainingError(
                f"--min_colourfulness {args.min_colourfulness}: no training photo is that "
                "colourful; lower it"
            )
    train = ColorizationDataset(
        images, augmentation=augmentation, train=True, captions=captions, seed=args.seed
    )
    val_images = decode_images(val_raw, columns.image) if len(val_raw) else []
    validation = ColorizationDataset(
        val_images,
        augmentation=augmentation,
        train=False,
        captions=captions_for(val_raw, columns, args.caption_template) if len(val_raw) else [],
        seed=args.seed + 1,
    )
    facts = {
        "columns": vars(columns),
        "num_train": len(train),
        "num_validation": len(validation),
        "dropped_by_min_colourfulness": dropped,
    }
    return train, validation, facts


# ---------------------------------------------------------------------------------------------
# the run


def _step_generator(seed: int, step: int, process: int, micro: int) -> torch.Generator:
    """The generator of one micro-batch's random draws (same on a resumed run)."""
    mixed = (seed * 1_000_003 + step * 1_009 + process * 101 + micro) % (2**63 - 1)
    return torch.Generator().manual_seed(mixed)


@torch.no_grad()
def run_validation(model, dataset, args, accelerator, step: int, output_dir: Path) -> dict:
    """Colourise the first validation photos; save a grid (gray, colourised, original)."""
    from deepcolor.color import gray_rgb_from_l, join_lab, lab_to_rgb
    from deepcolor.metrics import ciede2000, colourfulness, psnr

    from .data import to_lab_batch
    from .records import save_grid

    count = min(args.num_validation_images, len(dataset))
    if count == 0:
        return {}
    items = [dataset[i] for i in range(count)]
    rgb = torch.stack([item["rgb"] for item in items])
    lab = to_lab_batch({"rgb": rgb})
    prompts = [args.validation_prompt or item.get("caption", "") for item in items]
    pipe, trained = model.pipe, model.controlnet
    was_training = trained.training
    # The sampler runs in one precision, with a plain copy of the ControlNet: accelerate's
    # mixed-precision wrapper on the trained one returns float32 whatever the frozen parts use.
    snapshot = type(trained).from_config(trained.config)
    snapshot.load_state_dict(trained.state_dict())
    pipe.controlnet = snapshot.to(pipe.unet.device, pipe.unet.dtype).eval()
    try:
        ab = model.predict(
            lab["L"].to(accelerator.device),
            prompt=prompts,
            steps=args.validation_inference_steps,
            seed=args.seed,
        )
    finally:
        pipe.controlnet = trained
        trained.train(was_training)
    output = lab_to_rgb(join_lab(lab["L"], ab.float().cpu()))
    path = output_dir / "validation" / f"step-{step:06d}.png"
    save_grid([gray_rgb_from_l(lab["L"]), output, rgb.float() / 255.0], path)
    out_u8 = (output.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype("uint8")
    truth_u8 = rgb.permute(0, 2, 3, 1).numpy()
    return {
        "psnr": sum(min(psnr(t, o), 100.0) for t, o in zip(truth_u8, out_u8, strict=True)) / count,
        "ciede2000": sum(ciede2000(t, o) for t, o in zip(truth_u8, out_u8, strict=True)) / count,
        "colourfulness": sum(colourfulness(o) for o in out_u8) / count,
    }


def train(args, argv: Sequence[str] | None = None) -> Path:
    """Run the fine-tuning described by ``args``; returns the ``RUN/final`` folder."""
    from accelerate import Accelerator, PartialState
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from deepcolor.color import gray_rgb_from_l, rgb_to_lab
    from deepcolor.models.controlnet import ControlNetColorizer, noise_prediction_loss

    from .records import MetricsLog, hardware, write_json

    output_dir = Path(args.output_dir).expanduser().absolute()
    state = PartialState()
    ckpt.prepare_output_dir(output_dir, args, state.process_index)
    resume_from = ckpt.resolve_resume(output_dir, args.resume_from_checkpoint)
    state.wait_for_everyone()
    if state.is_main_process and args.overwrite_output_dir and resume_from is None:
        ckpt.clear_run(output_dir)
    state.wait_for_everyone()
    # The data first: a wrong column or an empty split is reported before any model loads.
    with state.main_process_first():  # the main process fills the datasets cache first
        train_data, val_data, facts = build_data(args)

    try:
        accelerator = Accelerator(
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            mixed_precision=args.mixed_precision,
            log_with=None if args.report_to == "none" else args.report_to,
            project_config=ProjectConfiguration(
                project_dir=str(output_dir), logging_dir=str(output_dir / "logs")
            ),
            dataloader_config=DataLoaderConfiguration(
                use_seedable_sampler=True, data_seed=args.seed
            ),
        )
    except (ValueError, RuntimeError) as exc:
        raise TrainingError(f"cannot set up accelerate: {exc}") from None
    main_process = accelerator.is_main_process
    set_seed(args.seed)

    # --- models: frozen SD, trainable ControlNet ----------------------------------------------
    model = ControlNetColorizer(
        working_size=args.resolution,
        base_model=args.base_model,
        controlnet_model=args.controlnet_model,
        steps=args.validation_inference_steps,
        dtype="float32",  # the trained ControlNet stays float32; the frozen parts follow below
    )
    model.load()
    if getattr(model.pipe, "text_encoder_2", None) is not None:
        raise TrainingError("--base_model: SDXL fine-tuning is not supported; use SD 1.x/2.x")
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(
        accelerator.mixed_precision, torch.float32
    )
    model.to(accelerator.device)
    pipe = model.pipe
    if weight_dtype != torch.float32:  # the frozen parts only run forward: half precision
        for part in (pipe.unet, pipe.vae, pipe.text_encoder):
            part.to(dtype=weight_dtype)
    controlnet = model.controlnet
    controlnet.train()
    if args.gradient_checkpointing:
        controlnet.enable_gradient_checkpointing()
        pipe.unet.enable_gradient_checkpointing()

    global_batch = args.train_batch_size * accelerator.num_processes
    if len(train_data) < global_batch:
        raise TrainingError(
            f"only {len(train_data)} training photos, fewer than one global batch of "
            f"{args.train_batch_size} x {accelerator.num_processes} process(es); lower "
            "--train_batch_size"
        )
    loader = DataLoader(
        train_data,
        batch_size=args.train_batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.dataloader_num_workers,
        pin_memory=accelerator.device.type == "cuda",
    )
    optimizer = torch.optim.AdamW(
        [p for p in controlnet.parameters() if p.requires_grad],
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        weight_decay=args.weight_decay,
    )
    controlnet, optimizer, loader = accelerator.prepare(controlnet, optimizer, loader)
    updates_per_epoch = max(1, math.ceil(len(loader) / args.gradient_accumulation_steps))
    max_steps = args.max_train_steps or args.num_train_epochs * updates_per_epoch
    num_epochs = math.ceil(max_steps / updates_per_epoch)
    scheduler = accelerator.prepare(
        build_lr_scheduler(optimizer, args, max_steps, accelerator.num_processes)
    )
    from diffusers import DDPMScheduler

    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)

    run_state = ckpt.TrainState()
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        run_state = ckpt.read_state(resume_from)
        if run_state.batches_in_epoch >= len(loader):
            run_state.epoch, run_state.batches_in_epoch = run_state.epoch + 1, 0
        accelerator.print(f"resumed from {resume_from} at step {run_state.global_step}")
    elif args.resume_from_checkpoint:
        accelerator.print(f"no checkpoint in {output_dir}; starting a new run")

    base, init = model.resolved_sources()
    metrics_log = None
    if main_process:
        command = "accelerate launch -m train.controlnet " + shlex.join(
            list(argv) if argv is not None else sys.argv[1:]
        )
        write_json(
            output_dir / "config.json",
            {
                "args": vars(args),
                "run": {
                    "command": command,
                    "base_model": base,
                    "controlnet_init": init,
                    "trainable_parameters": sum(p.numel() for p in model.controlnet.parameters()),
                    "num_processes": accelerator.num_processes,
                    "mixed_precision": accelerator.mixed_precision,
                    "global_batch_size": global_batch * args.gradient_accumulation_steps,
                    "max_train_steps": max_steps,
                    "hardware": hardware(),
                    "resumed_from": str(resume_from) if resume_from else None,
                    **facts,
                },
            },
        )
        metrics_log = MetricsLog(
            output_dir / "metrics.csv", run_state.global_step if resume_from else None
        )
    if args.report_to != "none":
        accelerator.init_trackers("deepcolor-controlnet")

    # --- the loop -----------------------------------------------------------------------------
    progress = tqdm(
        total=max_steps,
        initial=run_state.global_step,
        desc="controlnet",
        disable=not main_process,
        dynamic_ncols=True,
    )
    step = run_state.global_step
    window_loss, window_count, window_images = 0.0, 0, 0
    window_start = time.perf_counter()
    session_start = time.perf_counter()
    micro = 0
    done = step >= max_steps
    for epoch in range(run_state.epoch, num_epochs):
        if done:
            break
        loader.set_epoch(epoch)
        train_data.set_epoch(epoch)
        skip = run_state.batches_in_epoch if epoch == run_state.epoch else 0
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        batches_in_epoch = skip
        for batch in batches:
            batches_in_epoch += 1
            generator = _step_generator(args.seed, step, accelerator.process_index, micro)
            with accelerator.accumulate(controlnet):
                rgb = batch["rgb"].float() / 255.0
                control = gray_rgb_from_l(rgb_to_lab(rgb)[:, :1])
                captions = list(batch["caption"])
                empty = torch.rand(len(captions), generator=generator)
                captions = [
                    "" if drop < args.empty_prompt_fraction else text
                    for drop, text in zip(empty.tolist(), captions, strict=True)
                ]
                with accelerator.autocast():
                    loss = noise_prediction_loss(
                        pipe,
                        controlnet,
                        rgb,
                        control,
                        captions,
                        generator=generator,
                        noise_scheduler=noise_scheduler,
                    )
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(controlnet.parameters(), args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            micro += 1
            window_loss += float(loss.detach())
            window_count += 1
            window_images += rgb.shape[0] * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            step += 1
            micro = 0
            progress.update(1)
            elapsed = time.perf_counter() - window_start
            speed = window_images / max(elapsed, 1e-9)
            mean_loss = window_loss / max(window_count, 1)
            progress.set_postfix(loss=f"{mean_loss:.4g}", img_s=f"{speed:.2f}")
            if step % args.logging_steps == 0 or step == max_steps:
                lr = scheduler.get_last_lr()[0]
                if metrics_log is not None:
                    metrics_log.write(
                        step=step,
                        epoch=epoch,
                        split="train",
                        loss=mean_loss,
                        lr=lr,
                        images_per_s=speed,
                        wall_s=run_state.wall_seconds + time.perf_counter() - session_start,
                    )
                accelerator.log({"train/loss": mean_loss, "train/lr": lr}, step=step)
                window_loss, window_count, window_images = 0.0, 0, 0
                window_start = time.perf_counter()
            if step % args.checkpointing_steps == 0 or step == max_steps:
                folder = ckpt.checkpoint_dir(output_dir, step)
                if main_process:
                    ckpt.prune_checkpoints(output_dir, args.checkpoints_total_limit)
                accelerator.wait_for_everyone()
                accelerator.save_state(str(folder))
                if main_process:
                    ckpt.write_state(
                        folder,
                        ckpt.TrainState(
                            global_step=step,
                            epoch=epoch,
                            batches_in_epoch=batches_in_epoch,
                            wall_seconds=run_state.wall_seconds
                            + time.perf_counter()
                            - session_start,
                        ),
                    )
            if main_process and (step % args.validation_steps == 0 or step == max_steps):
                scores = run_validation(model, val_data, args, accelerator, step, output_dir)
                if scores and metrics_log is not None:
                    metrics_log.write(step=step, epoch=epoch, split="validation", **scores)
                    accelerator.log({f"validation/{k}": v for k, v in scores.items()}, step=step)
            if step >= max_steps:
                done = True
                break
    progress.close()

    # --- the result ---------------------------------------------------------------------------
    accelerator.wait_for_everyone()
    final = output_dir / "final"
    if main_process:
        trained = accelerator.unwrap_model(controlnet)
        if any(p.dtype != torch.float32 for p in trained.parameters()):
            trained.to(torch.float32)
        model.base_model = base  # the resolved source, so RUN/final loads the same base anywhere
        model.save_pretrained(final)
        _write_card(final, args, base, init, step, argv)
        accelerator.print(f"saved {final}")
    accelerator.end_training()
    return final


def _write_card(folder: Path, args, base: str, init: str, steps: int, argv) -> None:
    """RUN/final/README.md: what this ControlNet is and how it was trained."""
    command = "accelerate launch -m train.controlnet " + shlex.join(
        list(argv) if argv is not None else sys.argv[1:]
    )
    lines = [
        "---",
        "library_name: deepcolor",
        "tags: [colorization, controlnet, stable-diffusion]",
        *([] if Path(base).is_dir() else [f"base_model: {base}"]),
        "---",
        "# DeepColor `controlnet`: a fine-tuned colourisation ControlNet",
        "",
        f"- base model (frozen): `{base}`",
        f"- ControlNet initialised from: `{init}`",
        f"- dataset: `{args.dataset}`, {args.resolution} px, {steps} optimiser steps, "
        f"batch {args.train_batch_size} per process, learning rate {args.learning_rate}",
        f"- prompts: {_prompt_source(args)}; empty prompts {args.empty_prompt_fraction:.0%}",
        "",
        "Use: `deepcolor colorize PHOTO -o OUT --model controlnet --weights THIS_FOLDER "
        '--prompt "a colour photo of ..."`',
        "",
        f"Trained with: `{command}`",
        "",
    ]
    (folder / "README.md").write_text("\n".join(lines))


def _prompt_source(args) -> str:
    if args.caption_column:
        return f"column `{args.caption_column}`"
    if args.caption_template:
        return f"template `{args.caption_template}`"
    return "none (empty prompts)"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        train(args, argv)
    except DeepColorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with --resume_from_checkpoint latest", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
