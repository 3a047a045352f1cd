"""Copy trained run folders into ``deepcolor/weights/<model>/`` with a model card.

    .venv/bin/python bench/ship_weights.py runs/gpu            # every run folder found there
    .venv/bin/python bench/ship_weights.py runs/gpu --finetune unet runs/unet_sem  # + a fine-tune

``--finetune`` may be repeated for one model: the stages then fine-tune each other in order.

Each shipped folder holds ``config.json`` and ``model.safetensors`` exactly as ``train/`` saved
them (``--save_dtype fp16``; frozen parts an installed package provides are left out) and a
``README.md`` model card: data and its terms, the command, steps, wall time, hardware, and the
figures of ``docs/EVALUATION.md`` once the report has been generated.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "deepcolor" / "weights"
MAX_MB = 16.0

#: which run folder becomes which shipped model
RUNS = {
    "unet": "unet",
    "densenet": "densenet",
    "mobilenet": "mobilenet",
    "fusion": "fusion",
    "eccv16": "eccv16",
    "siggraph17": "siggraph17",
    "exemplar": "exemplar",
    "unet_bins": "unet_g2_cls",
}

#: inference settings written into a shipped config.json, and why (chosen on held-out photos)
SHIP_SETTINGS = {
    "unet": (
        {"chroma_gain": 1.5},
        "`chroma_gain` 1.5: the gain with the lowest mean CIEDE2000 on bsds500's 32 validation "
        "photos (`bench/choose_chroma_gain.py`: 10.73 at 1.0, 10.61 at 1.5, 10.68 at 2.0); gain "
        "3.0 is the largest there still no worse than `tint` (Kodak24 CIEDE2000 10.632, "
        "colourfulness 17.45). The app's default is now `blend`, which uses these weights at "
        "gain 1.0 plus half of `unet_bins`' colours.",
    ),
}

#: what a run folder's own records cannot say (keyed by run folder name)
STAGE_NOTES = {
    "unet_ft": (
        "Run on this 2-core CPU, fine-tuning the stage-1 weights (then shipped under "
        "`deepcolor/weights/unet`), with the semantic loss of `deepcolor.semantic.semantic_loss` "
        "(EfficientNet-Lite0's KL between true and predicted colours, weight 0.005). The run "
        "went on to step 1,249; its EMA checkpoint at step 600 had the best mean CIEDE2000 on "
        "bsds500's 32 validation photos (at the chosen gain 1.5: 10.61; step 900: 10.79; step "
        "1,200: 10.96; stage 1 alone: 10.97 at gain 1.0), so that checkpoint was copied to "
        "`runs/unet_ft` and turned into `RUN/final` by resuming it with `--max_train_steps 600 "
        "--save_dtype fp16` (no further steps)."
    ),
}

#: the GPU session a run came from (keyed by run folder name); the default is the first one
GPU_SESSIONS = {
    "unet_g2_cls": (
        "The second GPU session (one H100, issue 9) trained four `unet` runs at once for a fixed "
        'wall time (`RUNS="unet_g2 unet_g2_sem unet_g2_cls unet_g2_cls25" DATA=.gpu/data/mix50 '
        "WORKERS=3 bash bench/gpu_train.sh 450 OUT`, data by `bench/make_gpu_data.py "
        ".gpu/data/mix50 --per-class 50`), then turned each run's latest checkpoint into "
        "`RUN/final`. This is the classification run (`loss` `classification`, rebalancing 0.5, "
        "semantic loss 0.01). The command of this run:"
    ),
    "unet_g2_cls_more": (
        "A second call in the same GPU session continued that run from its final weights, alone "
        "on the GPU (`RUNS=unet_g2_cls_more DATA=.gpu/data/mix40 WORKERS=12 bash "
        "bench/gpu_train.sh 200 OUT`, data by `bench/make_gpu_data.py .gpu/data/mix40 "
        "--per-class 40`, sized so that it travelled with the weights). The command of this run:"
    ),
}
FIRST_GPU_SESSION = (
    "One prepared GPU session (`bench/gpu_train.sh 320 OUT`, issue 9) trained every model at "
    "once on a single GPU for a fixed wall time, then turned each run's latest checkpoint into "
    "`RUN/final` (no further steps). The command of this run:"
)

#: Tiny ImageNet photos per class in each model's training data (bench/make_gpu_data.py)
PER_CLASS = {"unet_bins": "50 photos per class in stage 1 and 40 in stage 2 (10,000 and 8,000)"}

DATA_TERMS = """\
- `tiny-imagenet` (Tiny ImageNet, Stanford CS231n, derived from ImageNet): {per_class} of
  the 200 classes, 64x64. ImageNet terms: non-commercial research and educational use
  only; copyright stays with the image owners.
- `bsds500` train split (200 photos, 481x321; Arbelaez et al., TPAMI 2011): research use,
  non-commercial; photos from the Corel database, copyright with their owners. Its 32-photo
  validation split (no CBSD68 photo among them) was the held-out set.
- Both as laid out in `../shared/data/train/`; merged into one Hub-layout parquet folder by
  `bench/make_gpu_data.py` (the BSDS photos get their own labels 200+i).
- Because of those terms, these weights are for non-commercial research use."""


def _final_validation(run: Path) -> dict[str, str]:
    rows = [r for r in csv.DictReader(open(run / "metrics.csv")) if r["split"] == "validation"]
    return rows[-1] if rows else {}


def _stage(run: Path) -> list[str]:
    """What one training run did: its command and figures."""
    config = json.loads((run / "config.json").read_text())
    args, info = config["args"], config["run"]
    train_rows = [r for r in csv.DictReader(open(run / "metrics.csv")) if r["split"] == "train"]
    steps = int(train_rows[-1]["step"]) if train_rows else 0
    wall = float(train_rows[-1].get("wall_s") or 0) if train_rows else 0.0
    command = (
        info["command"].split(" --resume_from_checkpoint")[0].replace(" --no-cache_images", "")
    )
    # a finalisation run may repeat --output_dir after the original command: keep the first
    parts = command.split(" --output_dir ")
    if len(parts) > 2:
        command = " --output_dir ".join(parts[:2])
    planned_match = re.search(r"--max_train_steps (\d+)", command)
    planned = int(planned_match.group(1)) if planned_match else 0
    hardware = info.get("hardware", "")
    on_gpu = "GPU" in hardware.upper() or "NVIDIA" in hardware.upper()
    lines = []
    if on_gpu:
        lines += [GPU_SESSIONS.get(run.name, FIRST_GPU_SESSION)]
    lines += ["", "```bash", command, "```", ""]
    if "1000000" in command:
        lines += [
            "(`--max_train_steps 1000000` is a ceiling: the run was stopped at the wall-time "
            "deadline.)",
            "",
        ]
    elif run.name in STAGE_NOTES:
        lines += [STAGE_NOTES[run.name], ""]
    elif steps < planned:
        lines += [
            f"(Stopped at step {steps} of the command's {planned} to fit the "
            "session's time; the latest checkpoint was turned into `RUN/final` by resuming it with "
            f"`--max_train_steps {steps}`.)",
            "",
        ]
    lines += [
        f"- optimiser steps: {steps} (global batch {info.get('global_batch_size')}, "
        f"{steps * int(info.get('global_batch_size') or 0):,} images seen)",
        f"- mixed precision: {info.get('mixed_precision')}; learning rate {args['learning_rate']} "
        f"({args['lr_scheduler']}, {args['lr_warmup_steps']} warm-up steps), EMA {args['ema_decay']}",
        f"- wall time: {wall / 60:.1f} min; hardware: {hardware}",
    ]
    if on_gpu:
        lines.append(
            "- to reproduce on CPU, run the same command without `--mixed_precision bf16` "
            "(slower: about 1/100 of the GPU's throughput on 2 cores)."
        )
    else:
        lines.append("- run as `accelerate launch --cpu ...` on this 2-core machine.")
    return [*lines, ""]


def model_card(model: str, runs: list[Path], report_rows: list[str]) -> str:
    """The card of weights made by ``runs`` in order (a later run fine-tunes the one before)."""
    last = runs[-1]
    info = json.loads((last / "config.json").read_text())["run"]
    val = _final_validation(last)
    lines = [
        "---",
        "library_name: deepcolor",
        "tags: [colorization, deepcolor]",
        "license: other",
        "---",
        f"# DeepColor `{model}`: shipped default weights",
        "",
        f"Loaded by `create_colorizer({model!r})`, `deepcolor colorize --model {model}` and the app,",
        "offline, with no download. Trained by this project's own `train/` code.",
        "",
        "## Data and terms",
        DATA_TERMS.format(per_class=PER_CLASS.get(model, "78 photos per class (15,600)")),
        "",
        "## How it was trained",
    ]
    for i, run in enumerate(runs, start=1):
        if len(runs) > 1:
            lines += [
                "",
                f"### Stage {i} of {len(runs)}" + (f" (fine-tunes stage {i - 1})" if i > 1 else ""),
            ]
        lines += _stage(run)
    lines += [
        f"- parameters: {info.get('parameters'):,} (including frozen parts)",
        "- weights: fp16 safetensors (frozen parts that the EfficientNet-Lite0 package provides, "
        "where a model has them, are not stored)",
        "",
        "## Held-out validation at the end of training",
        "",
        "| loss | PSNR | CIEDE2000 | colourfulness |",
        "|---|---|---|---|",
        f"| {val.get('loss', '')} | {val.get('psnr', '')} | {val.get('ciede2000', '')} | "
        f"{val.get('colourfulness', '')} |",
        "",
    ]
    if model in SHIP_SETTINGS:
        lines += ["## Inference setting", "", SHIP_SETTINGS[model][1], ""]
    if report_rows:
        lines += ["## Evaluation (`docs/EVALUATION.md`)", "", *report_rows, ""]
    return "\n".join(lines)


def report_rows_for(model: str) -> list[str]:
    """The model's mean figures per evaluation set, from the report's per-image CSVs."""
    import pandas as pd

    rows = []
    for set_name in ("kodak24", "mcmaster18", "cbsd68"):
        path = ROOT / "docs" / "eval" / f"{set_name}.csv"
        if not path.is_file():
            continue
        frame = pd.read_csv(path)
        frame = frame[frame.model.str.split(" ").str[0] == model]
        for label, group in frame.groupby("model", sort=False):
            m = group[["psnr", "ssim", "ciede2000", "colourfulness"]].mean()
            rows.append(
                f"| {set_name} | {label} | {len(group)} | {m.psnr:.2f} | {m.ssim:.4f} | "
                f"{m.ciede2000:.3f} | {m.colourfulness:.2f} |"
            )
    if not rows:
        return []
    header = "| set | model | images | PSNR | SSIM | CIEDE2000 | colourfulness |"
    return [header, "|---|---|---|---|---|---|---|", *rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", type=Path, help="folder holding one run folder per model")
    parser.add_argument(
        "--finetune",
        nargs=2,
        action="append",
        default=[],
        metavar=("MODEL", "RUN"),
        help="MODEL's weights come from RUN, a fine-tune of the run before it (repeatable, in order)",
    )
    args = parser.parse_args()
    finetunes: dict[str, list[Path]] = {}
    for model, run in args.finetune:
        finetunes.setdefault(model, []).append(Path(run))
    total = 0.0
    for model, run_name in RUNS.items():
        stages = [args.runs / run_name, *finetunes.get(model, [])]
        run = stages[-1]
        final = run / "final"
        if not (final / "model.safetensors").is_file():
            print(f"{model}: no {final}/model.safetensors, skipped")
            continue
        size = (final / "model.safetensors").stat().st_size / 2**20
        if size > MAX_MB:
            raise SystemExit(f"{model}: {size:.1f} MiB is over the {MAX_MB} MiB cap per model")
        for stage in stages:
            if not (stage / "config.json").is_file():
                shutil.copy(stage / "final" / "run_config.json", stage / "config.json")
                shutil.copy(stage / "final" / "train_metrics.csv", stage / "metrics.csv")
        out = TARGET / model
        out.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "model.safetensors"):
            shutil.copy(final / name, out / name)
        if model in SHIP_SETTINGS:
            config = json.loads((out / "config.json").read_text())
            config.update(SHIP_SETTINGS[model][0])
            (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        (out / "README.md").write_text(model_card(model, stages, report_rows_for(model)))
        total += size
        print(f"{model}: {size:.1f} MiB -> {out}")
    print(f"total {total:.1f} MiB")


if __name__ == "__main__":
    main()
