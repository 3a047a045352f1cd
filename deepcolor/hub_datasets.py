"""Colourise a dataset, streamed from the Hub or a local folder, into a dataset.

The source (``hf://datasets/OWNER/NAME[:SPLIT]``, a Hub id, or a local folder of Parquet files or
images) is read with ``datasets.load_dataset(..., streaming=True)``: rows arrive one at a time
and the image column is read as its encoded bytes, so memory does not grow with the dataset.
Under a launcher each process takes its part with ``datasets.distributed.split_dataset_by_node``.

The result keeps every original column and adds ``colorized`` (an image), written as Parquet
shards ``data/<split>-<process>-of-<processes>-<shard>.parquet`` (the layout the Hub reads as
the split), each ``rows_per_shard`` rows of one process, written row group by row group into a
temporary file and renamed when complete. A rerun with ``skip_existing`` keeps the complete
shards and continues after them; ``--push-to-hub`` uploads the folder at the end (files already
on the Hub are not sent again).
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .atomic import atomic_open
from .errors import DeepColorError, InvalidCondition, ModelUnavailable
from .manifest import ManifestRow, ManifestWriter, merge_manifest, part_path
from .runs import gather

PREFIX = "hf://datasets/"
#: the column added to the result
OUTPUT_COLUMN = "colorized"
#: what the run was, kept beside the shards so that a rerun continues the same run
RUN_FILE = "deepcolor-run.json"


@dataclass(frozen=True)
class DatasetSource:
    path: str  # a Hub id or a local folder
    split: str | None = None
    image_column: str | None = None

    @property
    def label(self) -> str:
        return f"{self.path}:{self.split}" if self.split else self.path


def parse_source(text: str, split: str | None = None) -> DatasetSource:
    """``hf://datasets/OWNER/NAME[:SPLIT]`` (or a bare id or folder, with ``split``)."""
    if text.startswith(PREFIX):
        rest = text[len(PREFIX) :]
        name, _, named_split = rest.partition(":")
        if name.count("/") != 1 or not all(name.split("/")):
            raise DeepColorError(
                f"{text}: a Hub dataset is written hf://datasets/OWNER/NAME or "
                "hf://datasets/OWNER/NAME:SPLIT"
            )
        if named_split and split and named_split != split:
            raise DeepColorError(f"{text} names split {named_split!r} but --split says {split!r}")
        return DatasetSource(name, named_split or split)
    return DatasetSource(text, split)


def is_dataset_input(text: str) -> bool:
    return text.startswith("hf://")


def open_stream(source: DatasetSource) -> tuple[Any, str, str]:
    """``(streamed rows, split, image column)``, the image column given as encoded bytes."""
    import datasets

    try:
        loaded = datasets.load_dataset(source.path, split=source.split, streaming=True)
    except FileNotFoundError as exc:
        raise DeepColorError(f"dataset {source.path!r} not found: {_first_line(exc)}") from None
    except (ValueError, ConnectionError, OSError) as exc:
        raise DeepColorError(f"cannot read dataset {source.path!r}: {_first_line(exc)}") from None
    except Exception as exc:  # datasets' own errors (offline, no data files, gated, ...)
        if type(exc).__module__.startswith(("datasets", "huggingface_hub")):
            raise DeepColorError(
                f"cannot read dataset {source.path!r}: {_first_line(exc)}"
            ) from None
        raise
    split = source.split
    if isinstance(loaded, datasets.IterableDatasetDict):
        splits = list(loaded)
        if len(splits) != 1:
            raise DeepColorError(
                f"dataset {source.path!r} has splits {', '.join(splits)}: name one with "
                f"--split or {PREFIX}{source.path}:SPLIT"
            )
        split = splits[0]
        loaded = loaded[split]
    if loaded.features is None:
        loaded = loaded._resolve_features()
    column = _image_column(loaded.features, source)
    loaded = loaded.cast_column(column, datasets.Image(decode=False))
    return loaded, split or "train", column


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _image_column(features, source: DatasetSource) -> str:
    import datasets

    images = [name for name, kind in features.items() if isinstance(kind, datasets.Image)]
    if source.image_column is not None:
        if source.image_column not in features:
            raise DeepColorError(
                f"dataset {source.path!r} has no column {source.image_column!r}; its columns "
                f"are {', '.join(features)}"
            )
        return source.image_column
    if len(images) != 1:
        found = f"image columns {', '.join(images)}" if images else "no image column"
        raise DeepColorError(
            f"dataset {source.path!r} has {found}: name the one to colourise with "
            f"--image-column (columns: {', '.join(features)})"
        )
    if OUTPUT_COLUMN in features:
        raise DeepColorError(f"dataset {source.path!r} already has a column {OUTPUT_COLUMN!r}")
    return images[0]


# --- pushing ---------------------------------------------------------------------------------------
def check_push(repo: str) -> None:
    """Before any work: a push that cannot happen is said now, not after hours of work."""
    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise DeepColorError(
            f"--push-to-hub {repo}: HF_HUB_OFFLINE is set, so nothing can be uploaded; unset it, "
            "or drop --push-to-hub and upload the --save-dataset folder later "
            "(`hf upload --repo-type dataset REPO FOLDER`)"
        )
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise DeepColorError(f"--push-to-hub {repo}: name the dataset repository as OWNER/NAME")
    if get_token() is None:
        raise DeepColorError(
            f"--push-to-hub {repo}: not logged in to the Hub; run `hf auth login` or set HF_TOKEN"
        )


def push(folder: Path, repo: str, private: bool = False) -> str:
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo, repo_type="dataset", exist_ok=True, private=private)
        info = api.upload_folder(
            repo_id=repo,
            folder_path=folder,
            repo_type="dataset",
            allow_patterns=["data/*.parquet", "README.md"],
            ignore_patterns=["data/.*"],  # a shard still being written
            commit_message="Colourised with DeepColor",
        )
    except Exception as exc:  # network, permissions: one line, the local copy is kept
        raise DeepColorError(
            f"could not push {folder} to {repo}: {_first_line(exc)} (the shards are kept; run "
            "the same command again with --skip-existing to retry the upload)"
        ) from None
    return str(getattr(info, "repo_url", repo))


# --- writing ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetRun:
    source: str
    split: str
    image_column: str
    model: str
    weights: str
    rows_per_shard: int
    processes: int


def shard_name(split: str, rank: int, processes: int, shard: int) -> str:
    return f"{split}-{rank:05d}-of-{processes:05d}-{shard:05d}.parquet"


def _done_shards(folder: Path, split: str, rank: int, processes: int) -> int:
    """How many of this process's shards are complete, counted from the first."""
    count = 0
    while (folder / "data" / shard_name(split, rank, processes, count)).exists():
        count += 1
    return count


def prepare_folder(folder: Path, run: DatasetRun, *, overwrite: bool, skip_existing: bool) -> None:
    """Check (or start) the output folder; the main process only, before the work."""
    record = folder / RUN_FILE
    shards = sorted((folder / "data").glob(f"{run.split}-*.parquet"))
    if shards and not (overwrite or skip_existing):
        raise DeepColorError(
            f"{folder} already holds {len(shards)} shard(s) of split {run.split!r}; use "
            "--skip-existing to continue that run or --overwrite to start again"
        )
    if shards and skip_existing and record.exists():
        before = json.loads(record.read_text())
        changed = [key for key, value in asdict(run).items() if before.get(key) != value]
        if changed:
            said = ", ".join(
                f"{key} {before.get(key)!r} -> {getattr(run, key)!r}" for key in changed
            )
            raise DeepColorError(
                f"{folder} holds a run with other settings ({said}); continue it with the same "
                "settings and number of processes, or use --overwrite"
            )
    if overwrite:
        for shard in shards:
            shard.unlink()
    try:
        (folder / "data").mkdir(parents=True, exist_ok=True)
        with atomic_open(record) as handle:
            handle.write(json.dumps(asdict(run), indent=2).encode())
        with atomic_open(folder / "README.md") as handle:
            handle.write(_card(run).encode())
    except OSError as exc:
        raise DeepColorError(f"cannot write to {folder}: {exc.strerror or exc}") from None
    for leftover in (folder / "data").glob(".deepcolor-*"):  # a killed run's unfinished shard
        leftover.unlink(missing_ok=True)


def _card(run: DatasetRun) -> str:
    return (
        f"---\ntags:\n- colorization\n- deepcolor\n---\n\n# {run.source}, colourised\n\n"
        f"Every row of split `{run.split}` of `{run.source}` with its columns as they were, plus "
        f"`{OUTPUT_COLUMN}`: the image of column `{run.image_column}` colourised by DeepColor's "
        f"`{run.model}` model (weights: `{run.weights}`). Rows whose image could not be read have "
        f"no `{OUTPUT_COLUMN}`.\n"
    )


def _png(result) -> bytes:
    handle = io.BytesIO()
    result.to_pil().save(handle, format="PNG")
    return handle.getvalue()


def _encoded(cell: dict | None) -> bytes | str | None:
    """An image cell read undecoded: its bytes, or the path of a local file (image folders)."""
    cell = cell or {}
    return cell.get("bytes") or cell.get("path")


def _colourise(pipe, rows: list[dict], column: str, conditions: dict) -> list[tuple[Any, str]]:
    """``(png bytes or None, reason)`` per row; one bad image fails only its own row."""
    images = [_encoded(row[column]) for row in rows]
    try:
        if all(images):
            return [(_png(r), "") for r in pipe.colorize_many(images, **dict(conditions))]
    except (InvalidCondition, ModelUnavailable):
        raise
    except (DeepColorError, OSError):
        pass  # one of them is bad: find which, one at a time
    out: list[tuple[Any, str]] = []
    for image in images:
        if not image:
            out.append((None, "the row has no image"))
            continue
        try:
            out.append((_png(pipe(image, **dict(conditions))), ""))
        except (InvalidCondition, ModelUnavailable):
            raise
        except (DeepColorError, OSError) as exc:
            out.append((None, str(exc).removeprefix("bytes: ")))
    return out


def _batches(rows, size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


#: rows per Parquet row group (what is held in memory before it is written)
ROW_GROUP_ROWS = 64


class _ShardWriter:
    """One shard: row groups appended to a temporary file, renamed into place when closed."""

    def __init__(self, path: Path, features) -> None:
        import pyarrow.parquet as pq

        self.path = path
        self.rows = 0
        self._features = features
        self._schema = features.arrow_schema
        self._pending: list[dict] = []
        self._context = atomic_open(path)
        self._writer = pq.ParquetWriter(self._context.__enter__(), self._schema)

    def add(self, row: dict) -> None:
        self._pending.append(self._features.encode_example(row))
        self.rows += 1
        if len(self._pending) == ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._pending:
            self._writer.write_table(pa.Table.from_pylist(self._pending, schema=self._schema))
            self._pending = []

    def close(self) -> None:
        self._flush()
        self._writer.close()
        self._context.__exit__(None, None, None)

    def abort(self, exc: BaseException) -> None:
        try:
            self._writer.close()
        finally:
            self._context.__exit__(type(exc), exc, exc.__traceback__)


def colorize_dataset(
    source: DatasetSource,
    folder: Path,
    pipe,
    conditions: dict,
    state: Any,
    *,
    model: str,
    weights: str,
    rows_per_shard: int = 1000,
    overwrite: bool = False,
    skip_existing: bool = False,
    manifest: Path | None = None,
) -> dict[str, int]:
    """Colourise ``source`` into ``folder``; returns counts over every process
    (``rows``, ``written``, ``failed``, and ``kept``: rows in shards kept from an earlier run)."""
    import datasets
    from datasets.distributed import split_dataset_by_node
    from tqdm.auto import tqdm

    stream, split, column = open_stream(source)
    rank, processes = state.process_index, state.num_processes
    label = f"{source.path}:{split}"
    run = DatasetRun(label, split, column, model, weights, rows_per_shard, processes)
    if state.is_main_process:
        prepare_folder(folder, run, overwrite=overwrite, skip_existing=skip_existing)
    state.wait_for_everyone()
    features = datasets.Features(
        {**stream.features, column: datasets.Image(), OUTPUT_COLUMN: datasets.Image()}
    )
    mine = split_dataset_by_node(stream, rank=rank, world_size=processes)
    done = _done_shards(folder, split, rank, processes) if skip_existing else 0
    if done:
        mine = mine.skip(done * rows_per_shard)
    manifest = manifest or folder / "manifest.csv"
    counts = {"rows": 0, "written": 0, "failed": 0, "kept": done * rows_per_shard}
    desc = f"colourising {label} ({model})"
    if processes > 1:
        desc += f" [process {rank + 1} of {processes}]"
    bar = tqdm(desc=desc, unit="row", position=rank if processes > 1 else None)
    index = done * rows_per_shard  # of the row in this process's part of the dataset
    shard, pending = None, []
    with ManifestWriter(part_path(manifest, rank)) as records:
        try:
            for batch in _batches(mine, pipe.batch_size):
                started = time.perf_counter()
                results = _colourise(pipe, batch, column, conditions)
                seconds = (time.perf_counter() - started) / len(batch)
                for row, (png, reason) in zip(batch, results, strict=True):
                    if shard is None:
                        number = index // rows_per_shard
                        path = folder / "data" / shard_name(split, rank, processes, number)
                        shard = _ShardWriter(path, features)
                    image = None if png is None else {"bytes": png, "path": None}
                    shard.add({**row, OUTPUT_COLUMN: image})
                    name = f"{label}#{index}" if processes == 1 else f"{label}#{rank}.{index}"
                    status = "ok" if png is not None else "failed"
                    pending.append(
                        ManifestRow(
                            name, str(shard.path), model, weights, seconds, status, reason, rank
                        )
                    )
                    index += 1
                    if shard.rows == rows_per_shard:
                        shard.close()
                        shard = None
                        _record(records, pending, counts)
                        pending = []
                bar.update(len(batch))
            if shard is not None:
                shard.close()
                shard = None
                _record(records, pending, counts)
        except BaseException as exc:
            if shard is not None:
                shard.abort(exc)
            raise
        finally:
            bar.close()
    state.wait_for_everyone()
    if state.is_main_process:
        merge_manifest(manifest)
    totals = {key: sum(part[key] for part in gather(state, counts)) for key in counts}
    state.wait_for_everyone()
    return totals


def _record(records: ManifestWriter, rows: list[ManifestRow], counts: dict[str, int]) -> None:
    """A shard is complete: its rows go into the manifest."""
    for row in rows:
        records.write(row)
        counts["rows"] += 1
        counts["written" if row.status == "ok" else "failed"] += 1
        if row.status == "failed":
            print(f"  {row.input}: {row.reason}", file=sys.stderr)
