"""Ship trained runs as the package's default weights, and write their model cards.

    python bench/ship_weights.py ship runs/recipes                 # RUNS/<model>/final, each model
    python bench/ship_weights.py ship runs/recipes --stage unet runs/recipes/unet-2
    python bench/ship_weights.py cards                              # rewrite every card

``ship`` copies ``config.json`` and ``model.safetensors`` exactly as ``train/`` saved them
(``--save_dtype fp16``; frozen parts an installed package provides are left out) into
``deepcolor/weights/<model>/``, records what the runs' ``config.json`` and ``metrics.csv`` say
(command, steps, batch, precision, wall time, hardware, final validation) in
``bench/shipped_models.json``, and writes the card. ``--stage MODEL RUN`` (repeatable, in order)
adds a run that fine-tunes the one before it. ``cards`` rewrites only the ``README.md`` files,
from that record and the evaluation report's per-image figures (``docs/eval/*.csv``); the
weights are not touched. Edit a stage's ``note`` in the record to say what its command alone
does not.
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
RECORD = ROOT / "bench" / "shipped_models.json"
MAX_MB = 16.0
MODELS = (
    "unet",
    "densenet",
    "mobilenet",
    "fusion",
    "eccv16",
    "siggraph17",
    "exemplar",
    "unet_bins",
)

#: inference settings written into a shipped config.json, and why (chosen on held-out photos)
SHIP_SETTINGS = {
    "unet": (
        {"chroma_gain": 1.5},
        "`chroma_gain` 1.5: the gain with the lowest mean CIEDE2000 on bsds500's 32 validation "
        "photos (`bench/choose_chroma_gain.py`: 10.73 at 1.0, 10.61 at 1.5, 10.68 at 2.0); gain "
        "3.0 is the largest there still no worse than `tint` (Kodak24 CIEDE2000 10.632, "
        "colourfulness 17.45). The default automatic model, `blend`, uses these weights at "
        "gain 1.0 plus half of `unet_bins`' colours.",
    ),
}

DATA_TERMS = """\
- `tiny-imagenet` (Tiny ImageNet, Stanford CS231n, derived from ImageNet): {per_class}
  of the 200 classes, 64x64. ImageNet terms: non-commercial research and educational use
  only; copyright stays with the image owners.
- `bsds500` train split (200 photos, 481x321; Arbelaez et al., TPAMI 2011): research use,
  non-commercial; photos from the Corel database, copyright with their owners. Its 32-photo
  validation split (no CBSD68 photo among them) was the held-out set.
- `$TRAIN_DATA` in the commands below: the Tiny ImageNet and BSDS500 subsets in one Hub-layout
  parquet folder, made by `python bench/make_training_data.py $TRAIN_DATA` from the `train/`
  folder of the data folder (the `DEEPCOLOR_EVAL_DATA` setting); the BSDS photos get their own
  labels 200+i.
- Because of those terms, these weights are for non-commercial research use."""


# ---------------------------------------------------------------------------------------------
# what a run folder says


def user_command(command: str, steps: int) -> str:
    """A run's command as a user repeats it: the data as ``$TRAIN_DATA``, the steps it trained."""
    command = command.split(" --resume_from_checkpoint")[0].replace(" --no-cache_images", "")
    command = re.sub(r"--dataset \S+", "--dataset $TRAIN_DATA", command)
    return re.sub(r"--max_train_steps \d+", f"--max_train_steps {steps}", command)


def stage_record(run: Path) -> dict:
    """One run's facts, from its config.json and metrics.csv."""
    config = json.loads((run / "config.json").read_text())
    args, info = config["args"], config["run"]
    with open(run / "metrics.csv", newline="") as f:
        train_rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
    steps = int(train_rows[-1]["step"]) if train_rows else 0
    wall = float(train_rows[-1].get("wall_s") or 0) if train_rows else 0.0
    return {
        "command": user_command(info["command"], steps),
        "steps": steps,
        "global_batch": info.get("global_batch_size"),
        "mixed_precision": info.get("mixed_precision"),
        "learning_rate": args["learning_rate"],
        "lr_scheduler": args["lr_scheduler"],
        "lr_warmup_steps": args["lr_warmup_steps"],
        "ema_decay": args["ema_decay"],
        "wall_minutes": round(wall / 60, 1),
        "hardware": info.get("hardware", ""),
        "note": "",
    }


def model_record(stages: list[Path]) -> dict:
    """The record of weights made by ``stages`` in order (a later run fine-tunes the one before)."""
    last = stages[-1]
    info = json.loads((last / "config.json").read_text())["run"]
    with open(last / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "validation"]
    final = rows[-1] if rows else {}
    return {
        "data": f"{info.get('num_train')} training photos",
        "parameters": info.get("parameters"),
        "stages": [stage_record(run) for run in stages],
        "validation": {k: final.get(k, "") for k in ("loss", "psnr", "ciede2000", "colourfulness")},
    }


# ---------------------------------------------------------------------------------------------
# the card


def _stage_lines(stage: dict) -> list[str]:
    lines = ["```bash", stage["command"], "```", ""]
    if stage.get("note"):
        lines += [stage["note"], ""]
    lines += [
        f"- optimiser steps: {stage['steps']} (global batch {stage['global_batch']}, "
        f"{stage['steps'] * int(stage['global_batch'] or 0):,} images seen)",
        f"- mixed precision: {stage['mixed_precision']}; learning rate {stage['learning_rate']} "
        f"({stage['lr_scheduler']}, {stage['lr_warmup_steps']} warm-up steps), "
        f"EMA {stage['ema_decay']}",
        f"- wall time: {stage['wall_minutes']:.1f} min; hardware: {stage['hardware']}",
        "",
    ]
    return lines


def model_card(model: str, record: dict, report_rows: list[str]) -> str:
    """The README.md of ``deepcolor/weights/<model>``: data, commands, steps, hardware, figures."""
    val, stages = record["validation"], record["stages"]
    recipes = [model] + [f"{model}-{i}" for i in range(2, len(stages) + 1)]
    lines = [
        "---",
        "library_name: deepcolor",
        "tags: [colorization, deepcolor]",
        "license: other",
        "---",
        f"# DeepColor `{model}`: shipped default weights",
        "",
        f"Loaded by `create_colorizer({model!r})`, `deepcolor colorize --model {model}` and the app,",
        "offline, with no download. Trained with this project's `train/`;",
        f"`bash bench/train_recipes.sh {' '.join(recipes)}` repeats the training.",
        "",
        "## Data and terms",
        DATA_TERMS.format(per_class=record["data"]),
        "",
        "## How it was trained",
        "",
    ]
    for i, stage in enumerate(stages, start=1):
        if len(stages) > 1:
            suffix = f" (fine-tunes stage {i - 1})" if i > 1 else ""
            lines += [f"### Stage {i} of {len(stages)}{suffix}", ""]
        lines += _stage_lines(stage)
    lines += [
        f"- parameters: {record['parameters']:,} (including frozen parts)",
        "- weights: fp16 safetensors (frozen parts that the EfficientNet-Lite0 package provides, "
        "where a model has them, are not stored)",
        "",
        "## Held-out validation at the end of training",
        "",
        "| loss | PSNR | CIEDE2000 | colourfulness |",
        "|---|---|---|---|",
        f"| {val['loss']} | {val['psnr']} | {val['ciede2000']} | {val['colourfulness']} |",
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


# ---------------------------------------------------------------------------------------------
# commands


def write_cards(models: list[str]) -> None:
    record = json.loads(RECORD.read_text())
    for model in models:
        card = model_card(model, record[model], report_rows_for(model))
        (TARGET / model / "README.md").write_text(card)
        print(f"{model}: card written")


def ship(runs: Path, stages: dict[str, list[Path]]) -> None:
    record = json.loads(RECORD.read_text()) if RECORD.is_file() else {}
    total = 0.0
    for model in MODELS:
        chain = [runs / model, *stages.get(model, [])]
        final = chain[-1] / "final"
        if not (final / "model.safetensors").is_file():
            print(f"{model}: no {final}/model.safetensors, skipped")
            continue
        size = (final / "model.safetensors").stat().st_size / 2**20
        if size > MAX_MB:
            raise SystemExit(f"{model}: {size:.1f} MiB is over the {MAX_MB} MiB cap per model")
        out = TARGET / model
        out.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "model.safetensors"):
            shutil.copy(final / name, out / name)
        if model in SHIP_SETTINGS:
            config = json.loads((out / "config.json").read_text())
            config.update(SHIP_SETTINGS[model][0])
            (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        record[model] = model_record(chain)
        total += size
        print(f"{model}: {size:.1f} MiB -> {out}")
    RECORD.write_text(json.dumps(record, indent=2) + "\n")
    write_cards([m for m in MODELS if m in record and (TARGET / m).is_dir()])
    print(f"total {total:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    shipping = commands.add_parser("ship", help="copy run folders in and write their cards")
    shipping.add_argument("runs", type=Path, help="folder holding one run folder per model")
    shipping.add_argument(
        "--stage",
        nargs=2,
        action="append",
        default=[],
        metavar=("MODEL", "RUN"),
        help="MODEL's weights come from RUN, a fine-tune of the run before it (repeatable)",
    )
    commands.add_parser("cards", help="rewrite the cards from bench/shipped_models.json")
    args = parser.parse_args()
    if args.command == "cards":
        write_cards([m for m in MODELS if (TARGET / m).is_dir()])
        return
    stages: dict[str, list[Path]] = {}
    for model, run in args.stage:
        stages.setdefault(model, []).append(Path(run))
    ship(args.runs, stages)


if __name__ == "__main__":
    main()
