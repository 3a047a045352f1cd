"""Regenerate docs/EVALUATION.md: every shipped model and the baselines, measured the same way.

    .venv/bin/python bench/evaluation_report.py            # full report (about 48 min on 2 cores)
    .venv/bin/python bench/evaluation_report.py --limit 4  # a quick look (4 photos a set)

The data folder is ``--data`` (default: ``$DEEPCOLOR_EVAL_DATA``); its ``README.md`` gives the
protocol, which :mod:`deepcolor.metrics` follows. Writes per-image CSVs under
``docs/eval/``, contact sheets ``docs/contact_<set>.png``, the ECCV16 temperature plot and the
Markdown report. Models without loadable weights are listed as missing, never silently skipped.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from hint_locality import locality_report  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from deepcolor import ColorizationPipeline, create_colorizer  # noqa: E402
from deepcolor.color import gray_rgb_from_l  # noqa: E402
from deepcolor.datasets import eval_data_folder  # noqa: E402
from deepcolor.errors import DeepColorError  # noqa: E402
from deepcolor.hints import PointHint, ground_truth_point_hints  # noqa: E402
from deepcolor.images import load_image, load_uint8, to_uint8  # noqa: E402
from deepcolor.metrics import evaluate, summarize  # noqa: E402
from deepcolor.pipeline import lightness  # noqa: E402
from deepcolor.registry import DEFAULT_AUTOMATIC  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SETS = ("kodak24", "mcmaster18", "cbsd68")
SHIPPED = (
    "blend",
    "unet",
    "unet_bins",
    "fusion",
    "densenet",
    "mobilenet",
    "eccv16",
    "siggraph17",
    "exemplar",
)
TEMPERATURES = (0.1, 0.2, 0.38, 0.6, 1.0)
#: shipped settings evaluated as models of their own: label -> (model, constructor kwargs)
SETTINGS = {"blend vivid": ("blend", {"chroma_gain": 1.25})}
HINT_COUNTS = (0, 1, 5, 10, 50)
HINT_PATCH = 5
SEED = 0


def _files(eval_dir: Path, name: str, limit: int | None) -> list[Path]:
    files = sorted((eval_dir / name).glob("*.png"))
    return files[:limit] if limit else files


def load_models(names) -> tuple[dict[str, ColorizationPipeline], dict[str, str]]:
    """Pipelines for ``names``, then for each setting in SETTINGS whose model is among them."""
    pipes, missing = {}, {}
    wanted = [(name, name, {}) for name in names]
    wanted += [(label, model, kw) for label, (model, kw) in SETTINGS.items() if model in names]
    for label, name, kwargs in wanted:
        try:
            pipes[label] = ColorizationPipeline(create_colorizer(name, **kwargs), device="cpu")
        except DeepColorError as exc:
            missing[label] = str(exc)
    return pipes, missing


def ground_truth_hints(original: np.ndarray, count: int, seed: int) -> list[PointHint]:
    """``count`` hints at Gaussian-centred positions, each the true mean ab of a patch."""
    return ground_truth_point_hints(original, count, seed, size=HINT_PATCH)


def similar_reference(target: Path, candidates: list[Path]) -> Path:
    """The other photo of the set whose L histogram and layout are closest (a simple proxy)."""

    def signature(path: Path) -> np.ndarray:
        img = Image.fromarray(load_uint8(path)).convert("L").resize((16, 16), Image.BILINEAR)
        return np.asarray(img, dtype=np.float64).ravel() / 255.0

    sig = signature(target)
    others = [c for c in candidates if c != target]
    return min(others, key=lambda c: float(np.abs(signature(c) - sig).mean()))


def gray_input(path: Path) -> np.ndarray:
    """The photo as every model sees it: its CIELAB L, shown in gray (uint8 RGB)."""
    gray = gray_rgb_from_l(lightness(load_image(path, keep_alpha=False)))
    return to_uint8(gray[0].permute(1, 2, 0).numpy())


def contact_sheet(files: list[Path], pipes: dict[str, ColorizationPipeline], out: Path) -> None:
    thumb = 160
    columns = ["input (gray)", *pipes, "original"]
    rows = files[:6]
    sheet = Image.new("RGB", (thumb * len(columns), (thumb + 4) * len(rows) + 20), "white")
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(columns):
        draw.text((c * thumb + 4, 4), label, fill="black")
    for r, path in enumerate(rows):
        original = load_uint8(path)
        tiles = [gray_input(path)]
        for _name, pipe in pipes.items():
            conditions = {"reference": original} if "reference" in pipe.model.needs else {}
            tiles.append(pipe(original, **conditions).rgb)
        tiles.append(original)
        for c, tile in enumerate(tiles):
            im = Image.fromarray(tile)
            im.thumbnail((thumb, thumb))
            sheet.paste(im, (c * thumb, 20 + r * (thumb + 4)))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)


def temperature_sweep(files: list[Path], out_png: Path) -> pd.DataFrame:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pipe = ColorizationPipeline(create_colorizer("eccv16"), device="cpu")
    rows = []
    for t in TEMPERATURES:
        frame = evaluate(
            pipe,
            files,
            model_label=f"eccv16 T={t}",
            condition_fn=lambda _p, _o, t=t: {"temperature": t},
            progress=False,
        )
        rows.append(
            {
                "temperature": t,
                "ciede2000": frame.ciede2000.mean(),
                "colourfulness": frame.colourfulness.mean(),
            }
        )
    table = pd.DataFrame(rows)
    fig, ax1 = plt.subplots(figsize=(6, 3.5))
    ax1.plot(table.temperature, table.ciede2000, "o-", color="tab:red", label="CIEDE2000")
    ax1.set_xlabel("annealed-mean temperature T")
    ax1.set_ylabel("CIEDE2000 (lower is better)", color="tab:red")
    ax2 = ax1.twinx()
    ax2.plot(table.temperature, table.colourfulness, "s-", color="tab:blue")
    ax2.set_ylabel("colourfulness", color="tab:blue")
    ax1.set_title("eccv16 (compact) on Kodak24")
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return table


ORIGINAL_COLOURFULNESS = {"kodak24": 39.55, "mcmaster18": 70.62, "cbsd68": 37.51}


def shortfalls(summaries: dict[str, pd.DataFrame], out: Path) -> list[str]:
    """Where each learned model does not beat the better baseline, and how dull it is."""
    lines = ["## Where the models fall short", ""]
    for set_name, summary in summaries.items():
        rows = summary.set_index("model")
        best_name = min(("gray", "tint"), key=lambda n: rows.loc[n, "ciede2000"])
        best = rows.loc[best_name, "ciede2000"]
        verdicts = []
        for name, row in rows.iterrows():
            if name in ("gray", "tint"):
                continue
            beats = "beats" if row.ciede2000 < best else "does NOT beat"
            share = row.colourfulness / ORIGINAL_COLOURFULNESS[set_name]
            dull = ", desaturated" if share < 0.5 else ""
            verdicts.append(
                f"`{name}` {beats} it ({row.ciede2000:.3f}; colourfulness {100 * share:.0f} % "
                f"of the originals'{dull})"
            )
        lines.append(
            f"- **{set_name}**: better baseline `{best_name}` (CIEDE2000 {best:.3f}); "
            + "; ".join(verdicts)
            + "."
        )
    notes = out / "evaluation_notes.md"
    if notes.is_file():  # what the contact sheets show, written by a person who looked at them
        lines += ["", notes.read_text().strip()]
    return [*lines, ""]


#: the quality bars (set by the data README's baselines): (set, metric, comparison, bar)
FAITHFUL_BARS = (
    ("kodak24", "ciede2000", "<=", 10.57),
    ("mcmaster18", "ciede2000", "<=", 14.14),
    ("cbsd68", "ciede2000", "<=", 11.40),
    ("kodak24", "psnr", ">=", 23.8),
    ("kodak24", "colourfulness", ">=", 20.0),
)
VIVID_BARS = (("kodak24", "colourfulness", ">=", 30.0), ("kodak24", "ciede2000", "<=", 11.135))
GRAY_SEMANTIC_TOP1 = 75.98
FAITHFUL, VIVID = DEFAULT_AUTOMATIC, f"{DEFAULT_AUTOMATIC} vivid"


def acceptance(
    summaries: dict[str, pd.DataFrame],
    kodak_wins: dict[str, int],
    hint_means: dict[int, float],
    semantic_top1: dict[str, float],
) -> list[str]:
    """Each quality bar against what this run measured: value, bar, pass or FAIL."""
    lines = [
        "## Quality bars",
        "",
        "| model | figure | measured | bar | |",
        "|---|---|---|---|---|",
    ]

    def row(model: str, what: str, value: float | None, op: str, bar: float) -> None:
        if value is None or np.isnan(value):
            lines.append(f"| `{model}` | {what} | not measured | {op} {bar} | |")
            return
        ok = value <= bar if op == "<=" else value >= bar
        shown = str(value) if isinstance(value, int) else f"{value:.3f}"
        lines.append(f"| `{model}` | {what} | {shown} | {op} {bar} | {'pass' if ok else 'FAIL'} |")

    def figure(set_name: str, label: str, metric: str) -> float | None:
        rows = summaries.get(set_name)
        if rows is None or label not in set(rows.model):
            return None
        return float(rows.set_index("model").loc[label, metric])

    for model, bars in ((FAITHFUL, FAITHFUL_BARS), (VIVID, VIVID_BARS)):
        for set_name, metric, op, bar in bars:
            row(model, f"{set_name} {metric}", figure(set_name, model, metric), op, bar)
        if model == FAITHFUL:
            wins = kodak_wins.get(model)
            row(model, "kodak24 photos better than gray", wins, ">=", 18)
        # gray on the same photos (75.98 % is gray's on all 974 with L* replicated)
        bar = round(semantic_top1.get("gray", GRAY_SEMANTIC_TOP1), 2)
        row(model, "semantic top-1 % (vs gray, same photos)", semantic_top1.get(model), ">=", bar)
    row("siggraph17", "Kodak24 CIEDE2000, 10 hints", hint_means.get(10), "<=", 7.0)
    row(
        "exemplar",
        "Kodak24 CIEDE2000, ground truth as reference",
        figure("kodak24", "exemplar (ground-truth reference)", "ciede2000"),
        "<=",
        8.0,
    )
    return [*lines, ""]


def fmt_table(frame: pd.DataFrame) -> str:
    cols = ["model", "images", "psnr", "ssim", "ciede2000", "colourfulness", "delta_colourfulness"]
    formats = {
        "psnr": "{:.2f}",
        "ssim": "{:.4f}",
        "ciede2000": "{:.3f}",
        "colourfulness": "{:.2f}",
        "delta_colourfulness": "{:+.2f}",
    }
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(formats.get(c, "{}").format(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def measure_set(files: list[Path], pipes: dict[str, ColorizationPipeline]) -> pd.DataFrame:
    """Per-image figures of every model on ``files``; a model that needs a reference is run
    with the ground truth as reference, then with the set's most similar other photo."""
    frames = []
    for name, pipe in pipes.items():
        fn = (lambda _path, o: {"reference": o}) if "reference" in pipe.model.needs else None
        label = f"{name} (ground-truth reference)" if fn else name
        frames.append(evaluate(pipe, files, model_label=label, condition_fn=fn, progress=True))
        if fn and len(files) > 1:  # a similar photo needs another photo in the set
            refs = {f: similar_reference(f, files) for f in files}
            frame = evaluate(
                pipe,
                files,
                model_label=f"{name} (similar photo as reference)",
                condition_fn=lambda path, _o, refs=refs: {"reference": refs[path]},
                progress=True,
            )
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def wins_over_gray(frame: pd.DataFrame, summary: pd.DataFrame) -> dict[str, int]:
    """Per model: on how many photos its CIEDE2000 is lower than ``gray``'s."""
    gray = frame[frame.model == "gray"].set_index("image").ciede2000
    wins = {}
    for name in summary.model:
        if name != "gray":
            per = frame[frame.model == name].set_index("image").ciede2000
            wins[name] = int((per < gray.loc[per.index]).sum())
    return wins


def hint_sweep(pipe: ColorizationPipeline, kodak: list[Path]) -> pd.DataFrame:
    """siggraph17 with 0, 1, 5, ... ground-truth hints on each photo (seeded per photo)."""
    rows = []
    for count in HINT_COUNTS:
        frame = evaluate(
            pipe,
            kodak,
            model_label=f"siggraph17, {count} hints",
            condition_fn=lambda path, o, c=count: {
                "hints": ground_truth_hints(o, c, SEED + kodak.index(path))
            },
            progress=False,
        )
        rows.append(frame)
    return summarize(pd.concat(rows, ignore_index=True))


def semantic_section(
    pipes: dict[str, ColorizationPipeline], folder: Path, limit: int | None
) -> tuple[list[str], dict[str, float]]:
    """The semantic test's table, and each model's top-1 in percent."""
    from deepcolor.semantic import semantic_accuracy

    lines = [
        "## Semantic test (EfficientNet-Lite0 on imagenet-sample)",
        "",
        "| input | top-1 | top-5 |",
        "|---|---|---|",
    ]
    top1: dict[str, float] = {}
    base = semantic_accuracy(None, folder, limit=limit)
    lines.append(f"| colour originals | {100 * base.top1:.2f} % | {100 * base.top5:.2f} % |")
    for name, pipe in pipes.items():
        if "reference" in pipe.model.needs:
            continue
        res = semantic_accuracy(pipe, folder, limit=limit, progress=True)
        top1[name] = 100 * res.top1
        lines.append(f"| {name} | {100 * res.top1:.2f} % | {100 * res.top5:.2f} % |")
    return [*lines, ""], top1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, help="photos per set (default: all)")
    parser.add_argument(
        "--semantic-limit", type=int, help="imagenet-sample photos (default: all 974)"
    )
    parser.add_argument(
        "--models", default=",".join(SHIPPED), help="comma-separated shipped models"
    )
    parser.add_argument("--out", default=str(ROOT / "docs"), help="output folder (default: docs/)")
    parser.add_argument("--data", help="the data folder (default: $DEEPCOLOR_EVAL_DATA)")
    args = parser.parse_args()
    try:
        eval_dir = eval_data_folder(args.data) / "eval"
    except DeepColorError as exc:
        parser.error(str(exc))
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    out = Path(args.out)
    (out / "eval").mkdir(parents=True, exist_ok=True)
    started = time.time()
    pipes, missing = load_models(["gray", "tint", *args.models.split(",")])
    report = [
        "# Evaluation report",
        "",
        "Regenerate with `.venv/bin/python bench/evaluation_report.py --data DIR` (the data "
        "folder; default `$DEEPCOLOR_EVAL_DATA`). Protocol: the data folder's `README.md` (L of "
        "each photo in, colourised, compared with the original).",
        "",
    ]
    if missing:
        report += ["Models not evaluated (no loadable weights in this installation):", ""]
        report += [f"- `{n}`: {why}" for n, why in missing.items()] + [""]

    summaries: dict[str, pd.DataFrame] = {}
    kodak_wins: dict[str, int] = {}
    hint_means: dict[int, float] = {}
    semantic_top1: dict[str, float] = {}
    for set_name in SETS:
        files = _files(eval_dir, set_name, args.limit)
        frame = measure_set(files, pipes)
        frame.to_csv(out / "eval" / f"{set_name}.csv", index=False)
        summary = summarize(frame)
        summaries[set_name] = summary
        report += [f"## {set_name} ({len(files)} photos)", "", fmt_table(summary), ""]
        if set_name == "kodak24":
            kodak_wins = wins_over_gray(frame, summary)
            wins = [f"`{n}` {w}/{len(files)}" for n, w in kodak_wins.items()]
            report += ["Photos with a lower CIEDE2000 than `gray`: " + ", ".join(wins) + ".", ""]
        contact_sheet(files, {n: p for n, p in pipes.items()}, out / f"contact_{set_name}.png")
        report += [f"![{set_name} contact sheet](contact_{set_name}.png)", ""]

    kodak = _files(eval_dir, "kodak24", args.limit)
    if "siggraph17" in pipes:
        sweep = hint_sweep(pipes["siggraph17"], kodak)
        hint_means.update(
            {c: float(r.ciede2000) for c, r in zip(HINT_COUNTS, sweep.itertuples(), strict=True)}
        )
        report += [
            "## siggraph17 with ground-truth hints (Kodak24)",
            "",
            f"Hints: {HINT_PATCH}x{HINT_PATCH} patches at the model's working size, positions "
            f"Gaussian around the centre, colours the true mean ab; seed {SEED}.",
            "",
            fmt_table(sweep),
            "",
            "How local a hint stays (`bench/hint_locality.py`: one hint per photo at a seeded "
            "random spot with the opposite hue of the truth at chroma 40, against no hint; a "
            "synthetic photo of two regions of equal lightness split by a dark line, one hinted):",
            "",
            *locality_report(pipes["siggraph17"], [load_uint8(p) for p in kodak]),
            "",
        ]
    if "eccv16" in pipes:
        table = temperature_sweep(kodak, out / "eccv16_temperature.png")
        report += [
            "## eccv16: annealing temperature (Kodak24)",
            "",
            "| T | CIEDE2000 | colourfulness |",
            "|---|---|---|",
        ]
        report += [
            f"| {r.temperature} | {r.ciede2000:.3f} | {r.colourfulness:.2f} |"
            for r in table.itertuples()
        ]
        report += ["", "![temperature sweep](eccv16_temperature.png)", ""]

    try:
        lines, semantic_top1 = semantic_section(
            pipes, eval_dir / "imagenet-sample", args.semantic_limit
        )
        report += lines
    except (ImportError, DeepColorError) as exc:
        report += [f"Semantic test not run: {exc}", ""]

    report += acceptance(summaries, kodak_wins, hint_means, semantic_top1)
    report += shortfalls(summaries, out)
    report += [
        f"Generated in {(time.time() - started) / 60:.1f} minutes on {os.cpu_count()} CPU cores.",
        "",
    ]
    video = out / "evaluation_video.md"
    if video.is_file():  # bench/video_benchmark.py's figures, quoted (too slow to rerun here)
        report += [video.read_text().strip(), ""]
    (out / "EVALUATION.md").write_text("\n".join(report))
    print("\n".join(report))


if __name__ == "__main__":
    main()
