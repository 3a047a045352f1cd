"""Command-line arguments of the training entry points and their checks.

``accelerate launch -m train`` and ``accelerate launch -m train.controlnet`` share the data,
optimisation and run-folder options (:func:`add_shared_arguments`, :func:`check_shared_args`);
each adds its own. The parsed ``argparse.Namespace`` is the run's configuration: it is written to
``RUN/config.json`` as given (plus what the run derived from it), so a run can be repeated.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from .errors import TrainingError

LR_SCHEDULERS = ("constant", "cosine", "linear")
MIXED_PRECISION = ("no", "fp16", "bf16")
SAVE_DTYPES = ("fp32", "fp16", "bf16")
REFERENCE_SOURCES = ("own", "label", "both")


def _json_dict(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"expected a JSON object like '{{\"k\": 1}}', got {text!r}"
        )
    return value


def entry_point_parser(module: str, description: str) -> argparse.ArgumentParser:
    """An empty parser for ``accelerate launch -m MODULE``, showing each option's default."""
    return argparse.ArgumentParser(
        prog=f"accelerate launch -m {module}",
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def add_shared_arguments(p: argparse.ArgumentParser) -> dict[str, argparse._ArgumentGroup]:
    """The data, augmentation, optimisation and run-folder options of every entry point.

    Returns the groups by name, so that an entry point can add its own options to them; it
    changes defaults with ``parser.set_defaults``.
    """
    bool_flag = argparse.BooleanOptionalAction
    groups = {}

    g = groups["data"] = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        required=True,
        help="Hub dataset id, or a local folder: Hub layout (parquet + README), imagefolder, "
        "or a datasets.save_to_disk folder",
    )
    g.add_argument("--dataset_config", default=None, help="configuration name of the dataset")
    g.add_argument(
        "--streaming",
        action="store_true",
        help="stream the dataset instead of downloading it whole (needs --max_train_steps)",
    )
    g.add_argument("--image_column", default=None, help="default: the first Image column")
    g.add_argument(
        "--label_column",
        default=None,
        help="class labels (same-class exemplar references, {label} in caption templates); "
        "default: 'label' if present",
    )
    g.add_argument("--caption_column", default=None, help="captions, passed as batch['caption']")
    g.add_argument("--train_split", default="train")
    g.add_argument(
        "--validation_split",
        default="validation",
        help="held-out split; if the dataset lacks it, --validation_fraction of train is held out "
        "(when streaming: the first --max_validation_samples rows)",
    )
    g.add_argument("--validation_fraction", type=float, default=0.05)
    g.add_argument("--max_train_samples", type=int, default=None)
    g.add_argument("--max_validation_samples", type=int, default=256)
    g.add_argument(
        "--cache_images",
        action=bool_flag,
        default=True,
        help="decode every image once and keep the uint8 arrays in memory (not with --streaming)",
    )
    g.add_argument(
        "--min_colourfulness",
        type=float,
        default=None,
        help="drop training photos whose Hasler-Suesstrunk colourfulness is below this "
        "(grayscale and nearly colourless photos teach desaturation); e.g. 10",
    )
    g.add_argument("--dataloader_num_workers", type=int, default=2)

    g = groups["augmentation"] = p.add_argument_group("preprocessing and augmentation")
    g.add_argument("--resolution", type=int, default=64, help="side of the square training crops")
    g.add_argument(
        "--random_crop",
        action=bool_flag,
        default=True,
        help="random-resized crop (else resize + centre crop)",
    )
    g.add_argument("--hflip", action=bool_flag, default=True, help="random horizontal flips")

    g = groups["optimisation"] = p.add_argument_group("optimisation")
    g.add_argument("--train_batch_size", type=int, default=32, help="per process")
    g.add_argument("--learning_rate", type=float, default=1e-3)
    g.add_argument("--adam_beta1", type=float, default=0.9)
    g.add_argument("--adam_beta2", type=float, default=0.999)
    g.add_argument("--adam_epsilon", type=float, default=1e-8)
    g.add_argument("--weight_decay", type=float, default=0.0, help="decoupled (AdamW)")
    g.add_argument("--lr_scheduler", choices=LR_SCHEDULERS, default="constant")
    g.add_argument("--lr_warmup_steps", type=int, default=0)
    g.add_argument("--max_grad_norm", type=float, default=1.0, help="0: no clipping")
    g.add_argument("--gradient_accumulation_steps", type=int, default=1)
    g.add_argument(
        "--mixed_precision",
        choices=MIXED_PRECISION,
        default=None,
        help="default: what `accelerate config` / `accelerate launch` says (else no)",
    )
    g.add_argument("--max_train_steps", type=int, default=None, help="overrides the epochs")
    g.add_argument("--num_train_epochs", type=int, default=1)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument(
        "--ddp_find_unused_parameters",
        action=bool_flag,
        default=True,
        help="multi-process only: tolerate parameters a model's loss does not use",
    )

    g = groups["run"] = p.add_argument_group("run folder, checkpoints, validation")
    g.add_argument("--output_dir", required=True, help="the run folder RUN")
    g.add_argument(
        "--overwrite_output_dir",
        action="store_true",
        help="start afresh in a folder that already holds a run",
    )
    g.add_argument("--checkpointing_steps", type=int, default=500, help="0: no checkpoints")
    g.add_argument("--checkpoints_total_limit", type=int, default=None)
    g.add_argument("--resume_from_checkpoint", default=None, help="'latest' or a checkpoint folder")
    g.add_argument("--validation_steps", type=int, default=500, help="0: validate only at the end")
    g.add_argument("--num_validation_images", type=int, default=8, help="images in the grid")
    g.add_argument("--logging_steps", type=int, default=10, help="metrics.csv / TensorBoard rows")
    g.add_argument("--report_to", choices=("tensorboard", "none"), default="tensorboard")
    g.add_argument("--tracker_project_name", default="deepcolor")
    g.add_argument("--push_to_hub", action="store_true", help="upload RUN/final with its card")
    g.add_argument("--hub_model_id", default=None, help="default: the output folder's name")
    g.add_argument("--hub_private", action="store_true")
    return groups


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``accelerate launch -m train`` (every option documented in docs/TRAINING.md)."""
    p = entry_point_parser("train", "Train or fine-tune a DeepColor feed-forward colouriser.")
    g = p.add_argument_group("model")
    g.add_argument("--model", required=True, help="registry name (see `deepcolor models`)")
    g.add_argument(
        "--model_kwargs",
        type=_json_dict,
        default={},
        help="JSON object of constructor arguments, e.g. '{\"working_size\": 64}'",
    )
    g.add_argument(
        "--import_modules",
        nargs="+",
        default=[],
        metavar="MODULE",
        help="Python modules to import first: they may register your own colourisers",
    )
    g.add_argument(
        "--init_weights",
        default=None,
        help="fine-tune from a save_pretrained folder or Hub id (default: fresh weights)",
    )
    groups = add_shared_arguments(p)

    g = groups["augmentation"]
    g.add_argument(
        "--crop_scale",
        type=float,
        nargs=2,
        default=(0.5, 1.0),
        metavar=("MIN", "MAX"),
        help="area fraction range of the random-resized crop",
    )
    g.add_argument("--rotation", type=float, default=0.0, help="max rotation in degrees (0: off)")
    g.add_argument("--zoom", type=float, default=0.0, help="max zoom in/out fraction (0: off)")
    g.add_argument("--shear", type=float, default=0.0, help="max shear in degrees (0: off)")
    g.add_argument(
        "--reference_source",
        choices=REFERENCE_SOURCES,
        default="both",
        help="exemplar references: the photo's own jittered, cropped and warped copy, another "
        "photo of the same label, or both (half each); only for models that take a reference",
    )
    g.add_argument("--reference_resolution", type=int, default=None, help="default: --resolution")

    g = groups["optimisation"]
    g.add_argument("--ema_decay", type=float, default=None, help="e.g. 0.999 (default: no EMA)")
    g = groups["run"]
    g.add_argument("--save_dtype", choices=SAVE_DTYPES, default="fp32", help="RUN/final weights")
    return p


def check_shared_args(args: argparse.Namespace) -> argparse.Namespace:
    """Refuse contradictory or out-of-range shared options with a sentence saying what to change."""
    positive = (
        "train_batch_size",
        "resolution",
        "gradient_accumulation_steps",
        "num_train_epochs",
        "logging_steps",
        "num_validation_images",
        "max_validation_samples",
    )
    for name in positive:
        if getattr(args, name) < 1:
            raise TrainingError(f"--{name} must be at least 1 (got {getattr(args, name)})")
    for name in ("checkpointing_steps", "validation_steps", "dataloader_num_workers"):
        if getattr(args, name) < 0:
            raise TrainingError(f"--{name} cannot be negative (got {getattr(args, name)})")
    for name in ("max_train_steps", "max_train_samples", "checkpoints_total_limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise TrainingError(f"--{name} must be at least 1 (got {value})")
    if not 0.0 < args.validation_fraction < 1.0:
        raise TrainingError("--validation_fraction must lie strictly between 0 and 1")
    if args.streaming and args.max_train_steps is None:
        raise TrainingError("--streaming needs --max_train_steps (a stream has no length)")
    return args


def check_args(args: argparse.Namespace) -> argparse.Namespace:
    """The shared checks plus those of ``-m train``'s own options."""
    check_shared_args(args)
    lo, hi = args.crop_scale
    if not 0.0 < lo <= hi <= 1.0:
        raise TrainingError(f"--crop_scale needs 0 < MIN <= MAX <= 1 (got {lo} {hi})")
    if args.ema_decay is not None and not 0.0 < args.ema_decay < 1.0:
        raise TrainingError("--ema_decay must lie strictly between 0 and 1, e.g. 0.999")
    if args.zoom < 0 or args.zoom >= 1:
        raise TrainingError("--zoom must be in [0, 1), e.g. 0.1 for +-10 %")
    if args.reference_resolution is None:
        args.reference_resolution = args.resolution
    args.crop_scale = (float(lo), float(hi))
    return args


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check ``argv`` (default: ``sys.argv[1:]``)."""
    return check_args(build_parser().parse_args(argv))
