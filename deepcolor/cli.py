"""The ``deepcolor`` command: ``colorize``, ``evaluate``, ``models``, ``download``. Thin wiring
over the library."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from .errors import DeepColorError, InvalidCondition, WeightsNotDownloaded
from .registry import DEFAULT_AUTOMATIC, list_colorizers

EPILOG = """examples:
  deepcolor models
  deepcolor download ddcolor ddcolor-tiny      # published weights, for later offline use
  deepcolor colorize old-photo.jpg -o out/ --model unet
  deepcolor colorize 'scans/**/*.tif' -o out/ --model siggraph17
  deepcolor colorize archive/ -o out/ --skip-existing     # continue a stopped run
  accelerate launch --multi_gpu --num_processes 2 -m deepcolor colorize archive/ -o out/
  deepcolor colorize hf://datasets/OWNER/NAME:train --save-dataset colour/ --push-to-hub me/colour
  deepcolor evaluate $DEEPCOLOR_EVAL_DATA/eval/kodak24 --model gray --model tint --csv kodak.csv
"""


#: the shipped automatic model `colorize` falls back to when ddcolor's weights cannot be had
DEFAULT_MODEL = DEFAULT_AUTOMATIC


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _megapixels(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 1e-6):  # also refuses nan; 1e-6 MP = 1 pixel
        raise argparse.ArgumentTypeError(f"must be a number of megapixels >= 0.000001, got {text}")
    return value


_positive_int.__name__ = "whole number"  # argparse says "invalid whole number value: 'x'"
_megapixels.__name__ = "number"


def _models_taking(condition: str) -> str:
    return ", ".join(i.name for i in list_colorizers() if condition in i.accepts)


def _add_condition_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reference", help="reference colour photo (models that take one)")
    parser.add_argument("--prompt", help="text prompt (models that take one)")
    parser.add_argument(
        "--temperature",
        type=float,
        help=f"annealed-mean temperature ({_models_taking('temperature')}): lower = more vivid",
    )
    parser.add_argument(
        "--chroma-gain",
        type=float,
        help=f"multiply the predicted colours ({_models_taking('chroma_gain')}): 0 = gray, "
        ">1 = more vivid; default: the model's shipped setting",
    )


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
            default=None,
            help="model name (default: ddcolor when its published weights are cached or can be "
            f"downloaded, else {DEFAULT_MODEL}, the shipped automatic model; "
            "DEEPCOLOR_DEFAULT_MODEL overrides); see `deepcolor models`",
        )
    parser.add_argument(
        "--weights",
        default="default",
        help="'default' (shipped or published weights), a save_pretrained folder (e.g. "
        "RUN/final), a Hub id, or 'official' (eccv16 / siggraph17: the authors' checkpoint)",
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
        "--backend",
        default=None,
        choices=("auto", "torch", "openvino", "openvino-int8"),
        help="who runs the network (default: DEEPCOLOR_BACKEND, else auto). auto: OpenVINO on "
        "the CPU for the DDColor models (exported once per weights and cached), torch "
        "elsewhere; torch; openvino; or openvino-int8 (quantised; the DDColor models)",
    )
    parser.add_argument(
        "--processing",
        default="smooth",
        choices=("smooth", "authors"),
        help="the steps around the network: smooth (default: exact CIELAB, antialiased L, "
        "bilinear colour; closest to the true colours) or authors (the original code's own "
        "resizing and OpenCV conversion, for identical pixels; the DDColor models)",
    )
    parser.add_argument(
        "--batch-size", type=_positive_int, default=8, help="images per model call (default: 8)"
    )
    parser.add_argument(
        "--max-megapixels",
        type=_megapixels,
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
        description="Colourise images. Outputs go to OUTDIR under the same names (PNG unless "
        "--format says otherwise); photos found inside a folder or by a glob keep their "
        "subfolders there, so same-named photos of different subfolders stay apart (a remaining "
        "clash is reported, never overwritten). Originals and existing outputs are never "
        "overwritten (unless --overwrite); outputs already inside OUTDIR are not colourised "
        "again. Failed files are listed at the end and the exit code is 1. OUTDIR/manifest.csv "
        "records every input's outcome; --skip-existing continues a stopped run. Under "
        "`accelerate launch -m deepcolor` the inputs are split across the processes.",
    )
    colorize.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="image or video files, folders or globs; or one dataset, "
        "hf://datasets/OWNER/NAME[:SPLIT]",
    )
    colorize.add_argument(
        "-o", "--output", metavar="OUTDIR", help="output folder (files; for a dataset: its copy)"
    )
    _add_model_args(colorize)
    colorize.add_argument(
        "--suffix", default="", help="added to each output name, e.g. --suffix=-colour"
    )
    colorize.add_argument(
        "--format",
        default="png",
        choices=("png", "jpg", "webp", "tiff"),
        help="output file format (default: png, lossless)",
    )
    existing = colorize.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    existing.add_argument(
        "--skip-existing",
        action="store_true",
        help="keep existing outputs and report them as skipped: a rerun continues where a "
        "stopped or killed run left off (outputs are written whole or not at all)",
    )
    colorize.add_argument(
        "--manifest",
        metavar="CSV",
        help="the run manifest, one row per input (input, output, model, weights, seconds, "
        "status, reason), written as the run goes (default: OUTDIR/manifest.csv)",
    )
    colorize.add_argument(
        "--no-recursive", action="store_true", help="do not descend into subfolders"
    )
    _add_condition_args(colorize)
    colorize.add_argument(
        "--video-format",
        default="mp4",
        choices=("mp4", "lossless", "png"),
        help="clips (.mp4 .mov .avi .mkv .webm ...): mp4 = H.264 (default), lossless = FFV1 in "
        ".mkv, png = a folder of frames; frame count, rate, size, rotation and audio are kept",
    )
    colorize.add_argument(
        "--frames-fps",
        type=float,
        metavar="FPS",
        help="treat folder INPUTs as clips of numbered frames at FPS frames per second",
    )
    colorize.add_argument(
        "--no-stabilize",
        action="store_true",
        help="clips: colourise every frame on its own (no temporal stabilisation; flickers)",
    )

    data = colorize.add_argument_group(
        "datasets",
        "colourise a dataset streamed from the Hub or a local folder (Parquet or images) into a "
        "dataset: every original column plus 'colorized', in Parquet shards; --skip-existing "
        "continues after the complete shards",
    )
    data.add_argument("--dataset", metavar="ID", help="a Hub dataset id or a local folder")
    data.add_argument("--split", help="the split to colourise (default: the only one)")
    data.add_argument(
        "--image-column", metavar="COLUMN", help="the column to colourise (default: the only image)"
    )
    data.add_argument(
        "--save-dataset", metavar="DIR", help="write the colourised dataset to this folder"
    )
    data.add_argument(
        "--push-to-hub",
        metavar="REPO",
        help="upload the colourised dataset to this Hub dataset repository (OWNER/NAME) at the "
        "end; the local copy goes to --save-dataset DIR or -o OUTDIR",
    )
    data.add_argument(
        "--rows-per-shard",
        type=_positive_int,
        default=1000,
        help="rows per Parquet shard, the unit a rerun resumes from (default: 1000)",
    )

    evaluate = sub.add_parser(
        "evaluate",
        help="score models against the colour originals of a folder",
        description="Each image is reduced to its L, colourised, and compared with the original "
        "(PSNR, SSIM, CIEDE2000, colourfulness). Prints the comparison table.",
    )
    evaluate.add_argument("folder", help="folder of colour photos")
    _add_model_args(evaluate, multiple=True)
    _add_condition_args(evaluate)
    evaluate.add_argument("--csv", help="write the per-image figures to this CSV file")
    evaluate.add_argument("--markdown", help="write the summary table to this Markdown file")

    models = sub.add_parser(
        "models",
        help="list the registered models and what each needs",
        description="List every registered model, what it needs and takes; the default is marked.",
    )
    models.add_argument("--verbose", "-v", action="store_true", help="also show weights sources")

    download = sub.add_parser(
        "download",
        help="fetch published weights now (for an offline machine or a Space image)",
        description="Download published weights into the Hugging Face cache (DDColor) or "
        "download and convert them into DeepColor's cache (official eccv16 / siggraph17; "
        "DEEPCOLOR_CACHE), and print each folder: copy it to an offline machine and pass it as "
        "--weights FOLDER. Names: see `deepcolor models`.",
    )
    download.add_argument("names", nargs="+", metavar="NAME", help="e.g. ddcolor, eccv16-official")
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
        processing=args.processing,
        backend=args.backend,
    )


def cmd_models(args) -> int:
    from .pipeline import resolve_device
    from .published import choose_default_model, published_weights
    from .runtime import expected_backend

    default = choose_default_model()
    device = resolve_device(None)
    published: dict[str, list] = {}
    for entry in published_weights():
        published.setdefault(entry.model, []).append(entry)
    infos = list_colorizers()
    width = max(len(i.name) for i in infos) + 2
    for info in infos:
        name = f"{info.name} *" if info.name == default.name else info.name
        print(f"{name:<{width}}  {info.summary}")
        print(f"{'':<{width}}  conditions: {info.describe_conditions()}")
        backend = expected_backend(getattr(info.factory, "exportable", False), device)
        print(f"{'':<{width}}  backend here: {backend} on {device.type}")
        for entry in published.get(info.name, []):
            print(f"{'':<{width}}  {_published_line(entry)}")
            if args.verbose:
                print(f"{'':<{width}}  by: {entry.authors}")
        if args.verbose:
            print(f"{'':<{width}}  weights: {info.weights}")
    print(f"\n* the {default.line()}")
    return 0


def _published_line(entry) -> str:
    """Source, size, licence and whether cached, for one published set of weights."""
    how = "" if entry.weights != "official" else " (--weights official)"
    state = "cached" if entry.cached else f"not cached: `deepcolor download {entry.key}`"
    return f"published weights{how}: {entry.source}, {entry.size_label}, {entry.licence}; {state}"


def cmd_download(args) -> int:
    from .published import find_published

    entries = [find_published(name) for name in args.names]  # every name checked first
    for entry in entries:
        print(f"{entry.key}: {entry.fetch()}")
    return 0


def _conditions(args) -> dict:
    """The options as model conditions. The reference is decoded here, once: a bad one is one
    error, not one per photo, and the pipeline gets pixels instead of a path to decode again."""
    conditions = {
        key: value
        for key, value in (
            ("prompt", args.prompt),
            ("temperature", args.temperature),
            ("chroma_gain", args.chroma_gain),
        )
        if value is not None
    }
    if args.reference is not None:
        from .pipeline import reference_tensor

        max_pixels = int(args.max_megapixels * 1e6)
        conditions["reference"] = reference_tensor(args.reference, max_pixels=max_pixels)
    return conditions


#: the option that gives each condition a model may need
CONDITION_OPTIONS = {"reference": "--reference PHOTO", "prompt": "--prompt TEXT"}


def _check_conditions(model, conditions: dict) -> None:
    """A model's conditions, checked before any work; a missing one is named by its option."""
    missing = [name for name in model.needs if conditions.get(name) is None]
    if missing:
        options = " and ".join(CONDITION_OPTIONS.get(name, name) for name in missing)
        raise InvalidCondition(f"model {model.name!r} needs {', '.join(missing)}: give {options}")
    model.check_conditions(conditions)


def _choose_model(args) -> None:
    """No --model: the default is chosen, and said, once for clips and photos alike."""
    if args.model is None:
        from .published import choose_default_model

        choice = choose_default_model()
        print(choice.line(), file=sys.stderr)
        args.model = choice.name


def _dataset_source(args):
    """The dataset the arguments name, or None when they name files."""
    from .hub_datasets import DatasetSource, is_dataset_input, parse_source

    named = [item for item in args.inputs if is_dataset_input(item)]
    if args.dataset is None and not named:
        for option in ("split", "image_column", "save_dataset", "push_to_hub"):
            if getattr(args, option) is not None:
                flag = "--" + option.replace("_", "-")
                raise DeepColorError(
                    f"{flag} is for datasets: give --dataset ID or hf://datasets/..."
                )
        return None
    if len(named) + (args.dataset is not None) != 1 or len(args.inputs) != len(named):
        raise DeepColorError(
            "colourise one dataset at a time, without files: give hf://datasets/OWNER/NAME "
            "or --dataset ID, not both and not with other inputs"
        )
    source = parse_source(named[0] if named else args.dataset, args.split)
    return DatasetSource(source.path, source.split, args.image_column)


def cmd_colorize(args) -> int:
    source = _dataset_source(args)
    if source is not None:
        return _colorize_dataset(args, source)
    if not args.inputs:
        raise DeepColorError("give the files, folders or globs to colourise (or a dataset)")
    if args.output is None:
        raise DeepColorError("give the output folder: -o OUTDIR")
    return _colorize_files(args)


def _process_pipeline(args):
    """``(pipeline, conditions, process state)`` for this process of a run: the conditions and
    the model checked first, the device this process takes (its own GPU under a launcher)."""
    from .runs import process_device, process_state

    conditions = _conditions(args)
    _choose_model(args)
    state = process_state()
    args.device = process_device(state, args.device)
    pipe = _pipeline(args, args.model)
    _check_conditions(pipe.model, conditions)
    return pipe, conditions, state


def _colorize_dataset(args, source) -> int:
    from .hub_datasets import check_push, colorize_dataset, push

    folder = args.save_dataset or args.output
    if folder is None:
        raise DeepColorError(
            "give the folder for the colourised dataset: --save-dataset DIR (with --push-to-hub, "
            "the copy that is uploaded and resumed from)"
        )
    if args.push_to_hub:
        check_push(args.push_to_hub)
    folder = Path(folder)
    pipe, conditions, state = _process_pipeline(args)
    counts = colorize_dataset(
        source,
        folder,
        pipe,
        conditions,
        state,
        model=args.model,
        weights=args.weights,
        rows_per_shard=args.rows_per_shard,
        overwrite=args.overwrite,
        skip_existing=args.skip_existing,
        manifest=Path(args.manifest) if args.manifest else None,
    )
    if not state.is_main_process:
        return int(counts["failed"] > 0)
    line = f"{counts['written']} of {counts['rows']} row(s) colourised into {folder}"
    if counts["kept"]:
        line += f", {counts['kept']} kept from an earlier run"
    print(line)
    if counts["failed"]:
        print(
            f"{counts['failed']} row(s) failed (listed above; their 'colorized' is empty)",
            file=sys.stderr,
        )
    print(f"manifest: {Path(args.manifest) if args.manifest else folder / 'manifest.csv'}")
    if args.push_to_hub:
        print(f"pushed to {push(folder, args.push_to_hub)}")
    return int(counts["failed"] > 0)


def _colorize_files(args) -> int:
    from .pipeline import find_image_files
    from .runs import RunOptions, plan, report, run
    from .video import split_clips

    out_dir = Path(args.output)
    recursive = not args.no_recursive
    clips, photo_inputs = split_clips(
        args.inputs, args.frames_fps, recursive=recursive, skip=out_dir
    )
    found = []
    if photo_inputs:
        found = find_image_files(photo_inputs, recursive=recursive, skip=out_dir)
    if not clips and not found:
        print("error: no input images or clips found", file=sys.stderr)
        return 2
    # one pipeline for clips and photos; an unknown model fails before anything is created
    pipe, conditions, state = _process_pipeline(args)
    options = RunOptions(
        out_dir=out_dir,
        manifest=Path(args.manifest) if args.manifest else out_dir / "manifest.csv",
        model=args.model,
        weights=args.weights,
        suffix=args.suffix,
        photo_format=args.format,
        video_format=args.video_format,
        overwrite=args.overwrite,
        skip_existing=args.skip_existing,
        frames_fps=args.frames_fps,
        stabilize=not args.no_stabilize,
    )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: cannot create output folder {out_dir}: {exc.strerror}", file=sys.stderr)
        return 2
    outcome = run(plan(clips, found, options), pipe, conditions, options, state)
    return (
        report(outcome, options) if state.is_main_process else int(any(outcome.failures.values()))
    )


def _writable_parent(path: str | None) -> None:
    """Create an output's folder before the work, so that a bad path fails first."""
    if path:
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeepColorError(f"cannot create the folder of {path}: {exc.strerror}") from None


def _write_atomically(path: str, write) -> None:
    """``write(handle)`` into ``path`` through a temporary file: a failure leaves nothing."""
    from .atomic import atomic_open

    try:
        with atomic_open(path) as handle:
            write(handle)
    except OSError as exc:
        raise DeepColorError(f"cannot write {path}: {exc.strerror or exc}") from None


def cmd_evaluate(args) -> int:
    import pandas as pd

    from .metrics import check_originals, evaluate, summarize, to_markdown

    conditions = _conditions(args)
    pipes = {name: _pipeline(args, name) for name in args.models}
    for pipe in pipes.values():  # every model's mistake before any model's work
        _check_conditions(pipe.model, conditions)
    check_originals(args.folder)
    _writable_parent(args.csv)
    _writable_parent(args.markdown)
    frames = [
        evaluate(pipe, args.folder, model_label=name, conditions=conditions)
        for name, pipe in pipes.items()
    ]
    frame = pd.concat(frames, ignore_index=True)
    table = to_markdown(summarize(frame))
    print(table)
    if args.csv:
        _write_atomically(args.csv, lambda handle: frame.to_csv(handle, index=False))
        print(f"per-image figures written to {args.csv}")
    if args.markdown:
        _write_atomically(args.markdown, lambda handle: handle.write(f"{table}\n".encode()))
        print(f"summary table written to {args.markdown}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    handler = {
        "models": cmd_models,
        "colorize": cmd_colorize,
        "evaluate": cmd_evaluate,
        "download": cmd_download,
    }[args.command]
    try:
        return handler(args)
    except WeightsNotDownloaded as exc:  # what to run elsewhere, or --weights FOLDER
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
