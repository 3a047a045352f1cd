"""Where the evaluation data lives: one setting, the environment variable ``DEEPCOLOR_EVAL_DATA``.

It names the data folder, which holds ``eval/`` (kodak24, mcmaster18, cbsd68, imagenet-sample,
``baselines.csv``) and ``train/`` (tiny-imagenet, bsds500); its ``README.md`` gives the
measurement protocol. Every bench script takes ``--data`` with this setting as its default.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DataUnavailable

EVAL_DATA_ENV = "DEEPCOLOR_EVAL_DATA"


def eval_data_folder(folder: str | os.PathLike | None = None) -> Path:
    """The data folder: ``folder`` when given, else ``$DEEPCOLOR_EVAL_DATA``.

    Raises :class:`~deepcolor.errors.DataUnavailable`, naming the variable, when neither is set
    or the folder does not exist.
    """
    chosen = folder if folder not in (None, "") else os.environ.get(EVAL_DATA_ENV)
    if not chosen:
        raise DataUnavailable(
            f"no evaluation data folder: set {EVAL_DATA_ENV}=DIR (the folder with eval/ and "
            "train/) or pass --data DIR"
        )
    path = Path(chosen).expanduser()
    if not path.is_dir():
        source = "--data" if folder not in (None, "") else EVAL_DATA_ENV
        raise DataUnavailable(f"the evaluation data folder {path} ({source}) does not exist")
    return path
