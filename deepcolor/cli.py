"""The ``deepcolor`` command: ``colorize``, ``evaluate``, ``models``. Thin wiring over the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import DeepColorError
from .registry import DEFAULT_AUTOMATIC

EPILOG = """examples:
  deepcolor models
  deepcolor colorize old-photo.jpg -o out/ --model unet
  deepcolor colorize 'scans/**/*.tif' -o out/ --model siggraph17
  deepcolor evaluate ../shared/data/eval/kodak24 --model gray --model tint --csv kodak.csv
"""


#: what `colorize` uses when no --model is given (the app's default too)
DEFAULT_MODEL = DEFAULT_AUTOMATIC


def _add_model_args(parser: argparse.ArgumentParser, multiple: bool = False) -> None:
    if multiple:
        parser.add_argument(
            "--model",
            "-m",
            action="append",
            required=True,
            dest="models",
            help="model name (repeat for several); see `deepcolor models`",
        )
    else:
        parser.add_argument(
            "--model",
            "-m",
            default=DEFAULT_MODEL,
            help=f"model name (default: {DEFAULT_MODEL}, the shipped automatic model); see "
            "`deepcolor models`",
        )
    parser.add_argument(
        "--weights",
        default="default",
        help="'default' (shipped weights), a save_pretrained folder (e.g. RUN/final) or a Hub id",
    )
    parser.add_argument(
        "--device", default="auto", help="auto, cpu, cuda, cuda:1 or mps (default: auto)"
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=("auto", "float32", "float16", "bfloat16"),
        help="inference precision (default: float32; auto = float16 on CUDA)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="images per model call (default: 8)"
    )
    parser.add_argument(
        "--max-megapixels",
        type=float,
        default=50.0,
        help="refuse images larger than this many megapixels (default: 50)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepcolor",
        description="Colourise grayscale photos and compare colourisation models.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    colorize = sub.add_parser(
        "colorize",
        help="colourise files, folders or glob patterns",
        description="Colourise images. Outputs go to OUTDIR as PNG (same names); originals are "
        "never overwritten. Failed files are listed at the end and the exit code is 1.",
    )
    colorize.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image files, folders or globs"
    )
    colorize.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    _add_model_args(colorize)
    colorize.add_argument("--suffix", default="", help="added to each output name, e.g. '-colour'")
    colorize.add_argument("--format", default="png", choices=("png", "jpg", "webp", "tiff"))
    colorize.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    colorize.add_argument(
        "--no-recursive", action="store_true", help="do not descend into subfolders"
    )
    colorize.add_argument("--reference", help="reference colour photo (models that take one)")
    colorize.add_argument("--prompt", help="text prompt (models that take one)")
    colorize.add_argument(
        "--temperature", type=float, help="annealed-mean temperature (eccv16, unet_bins)"
    )
    colorize.add_argument(
        "--chroma-gain",
        type=float,
        help="multiply the predicted colours (unet, densenet, mobilenet): 0 = gray, "
        ">1 = more vivid; default: the model's own setting",
    )

    evaluate = sub.add_parser(
        "evaluate",
        help="score models against the colour originals of a folder",
        description="Each image is reduced to its L, colourised, and compared with the original "
        "(PSNR, SSIM, CIEDE2000, colourfulness). Prints the comparison table.",
    )
    evaluate.add_argument("folder", help="folder of colour photos")
    _add_model_args(evaluate, multiple=True)
    evaluate.add_argument("--csv", help="write the per-image figures to this CSV file")
    evaluate.add_argument("--markdown", help="write the summary table to this Markdown file")

    models = sub.add_parser("models", help="list the registered models and what each needs")
    models.add_argument("--verbose", "-v", action="store_true", help="also show weights sources")
    return parser


def _pipeline(args, model_name: str):
    from .pipeline import ColorizationPipeline

    return ColorizationPipeline(
        model_name,
        weights=args.weights,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        max_pixels=int(args.max_megapixels * 1e6),
    )


def cmd_models(args) -> int:
    from .registry import list_colorizers

    infos = list_colorizers()
    width = max(len(i.name) for i in infos)
    for info in infos:
        print(f"{info.name:<{width}}  {info.summary}")
        print(f"{'':<{width}}  conditions: {info.describe_conditions()}")
        if args.verbose:
            print(f"{'':<{width}}  weights: {info.weights}")
    return 0


def cmd_colorize(args) -> int:
    from tqdm.auto import tqdm

    from .pipeline import iter_image_files

    files = iter_image_files(args.inputs, recursive=not args.no_recursive)
    if not files:
        print("error: no input images found", file=sys.stderr)
        return 2
    out_dir = Path(args.output)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: cannot create output folder {out_dir}: {exc.strerror}", file=sys.stderr)
        return 2
    pipe = _pipeline(args, args.model)
    conditions = {
        k: v
        for k, v in (
            ("reference", args.reference),
            ("prompt", args.prompt),
            ("temperature", args.temperature),
            ("chroma_gain", args.chroma_gain),
        )
        if v is not None
    }
    failures: list[tuple[Path, str]] = []
    written = 0
    inputs_resolved = {p.resolve() for p in files}
    for path in tqdm(files, desc=f"colourising ({args.model})", unit="img"):
        target = out_dir / f"{path.stem}{args.suffix}.{args.format}"
        try:
            if target.resolve() in inputs_resolved:
                raise DeepColorError(
                    f"output {target} would overwrite an input; choose another -o or --suffix"
                )
            if target.exists() and not args.overwrite:
                raise DeepColorError(f"{target} exists (use --overwrite to replace it)")
            pipe(path, **conditions).save(target, overwrite=args.overwrite)
            written += 1
        except (DeepColorError, OSError) as exc:
            failures.append((path, str(exc)))
    print(f"{written} of {len(files)} image(s) written to {out_dir}")
    if failures:
        print(f"{len(failures)} failed:", file=sys.stderr)
        for path, reason in failures:
            print(f"  {path}: {reason}", file=sys.stderr)
        return 1
    return 0


def cmd_evaluate(args) -> int:
    import pandas as pd

    from .metrics import evaluate, summarize, to_markdown

    frames = []
    for name in args.models:
        frames.append(evaluate(_pipeline(args, name), args.folder, model_label=name))
    frame = pd.concat(frames, ignore_index=True)
    table = to_markdown(summarize(frame))
    print(table)
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.csv, index=False)
        print(f"per-image figures written to {args.csv}")
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    handler = {"models": cmd_models, "colorize": cmd_colorize, "evaluate": cmd_evaluate}[
        args.command
    ]
    try:
        return handler(args)
    except DeepColorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
