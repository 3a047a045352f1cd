"""Training data: Hub or local datasets -> augmented uint8 crops -> CIELAB batches on the device.

Public, stable helpers (``train.controlnet`` uses them too):

- :func:`load_dataset_splits` - a Hub id or local folder -> ``(train, validation)`` datasets
- :func:`resolve_columns` - which columns hold the image / label / caption (clear errors)
- :func:`decode_images` - decode a column once into uint8 ``(H, W, 3)`` arrays (thread pool)
- :func:`colourful_indices` - which photos pass a colourfulness threshold
- :class:`Augmentation` - the switchable augmentation settings
- :class:`ColorizationDataset` / :class:`StreamingColorizationDataset` - torch datasets of dicts
  ``{"rgb": uint8 (3, R, R), ["reference": uint8 (3, r, r)], ["label": int], ["caption": str]}``
- :func:`caption_rule` - each photo's prompt: a caption column, a template, or nothing
- :func:`to_lab_batch` - a collated batch (already on the device) -> ``{"L", "ab", ...}`` in
  CIELAB units, float32: the conversion runs batched on the accelerator, not in the workers
- :func:`build_datasets` - all of the above from the parsed arguments, map-style or streamed

Every random choice of a sample (crop, flip, reference) is drawn from a generator seeded by
``(seed, epoch, index)``, so a sample looks the same whatever the number of workers or
processes, and a resumed run sees exactly the crops an uninterrupted one would have seen.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset, get_worker_info
from torchvision.transforms import v2

from deepcolor.color import rgb_to_lab
from deepcolor.metrics import colourfulness

from .errors import TrainingError

# ---------------------------------------------------------------------------------------------
# loading


def _load_raw(spec: str, config: str | None, streaming: bool):
    """``spec`` -> a ``DatasetDict`` / ``IterableDatasetDict`` (or raise TrainingError)."""
    import datasets

    path = Path(spec).expanduser()
    try:
        if path.exists():
            if not path.is_dir():
                raise TrainingError(f"--dataset {spec}: expected a folder or a Hub id, not a file")
            if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
                loaded = datasets.load_from_disk(str(path))  # a save_to_disk folder
                if isinstance(loaded, datasets.Dataset):
                    loaded = datasets.DatasetDict({"train": loaded})
                if streaming:
                    loaded = datasets.IterableDatasetDict(
                        {k: v.to_iterable_dataset() for k, v in loaded.items()}
                    )
                return loaded
            # Hub layout (parquet + README configs) or an imagefolder: the Hub code path
            return datasets.load_dataset(
                str(path), name=config, streaming=streaming, cache_dir=_local_cache_dir(path)
            )
        return datasets.load_dataset(spec, name=config, streaming=streaming)
    except TrainingError:
        raise
    except Exception as exc:  # datasets raises many types; all mean "cannot read that"
        empty = type(exc).__name__ == "EmptyDatasetError" or "corresponds to no data" in str(exc)
        if empty or (isinstance(exc, IndexError) and path.is_dir()):
            raise TrainingError(
                f"--dataset {spec} is empty: it holds no rows (or a split with none) to train on"
            ) from exc
        where = "local folder" if path.exists() else "Hub dataset"
        hint = ""
        if not path.exists() and os.environ.get("HF_DATASETS_OFFLINE") == "1":
            hint = " (HF_DATASETS_OFFLINE=1: only datasets already in the local cache load)"
        raise TrainingError(
            f"cannot load the {where} {spec!r}{hint}: {type(exc).__name__}: {exc}"
        ) from exc


def _local_cache_dir(folder: Path) -> str:
    """A datasets cache folder keyed by the local folder's location and files.

    datasets keys the Arrow cache of a local Hub-layout folder by its README configs only, so
    two folders with the same README (or one folder rebuilt) would share a stale cache.
    """
    import hashlib

    import datasets

    digest = hashlib.sha256(str(folder.resolve()).encode())
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return str(
        Path(datasets.config.HF_DATASETS_CACHE) / "deepcolor-local" / digest.hexdigest()[:16]
    )


def load_dataset_splits(
    spec: str,
    *,
    config: str | None = None,
    train_split: str = "train",
    validation_split: str | None = "validation",
    validation_fraction: float = 0.05,
    streaming: bool = False,
    streaming_validation_size: int = 256,
    seed: int = 0,
):
    """A Hub id or local folder -> ``(train, validation)``.

    The validation split is ``validation_split`` when the dataset has it; otherwise a held-out
    ``validation_fraction`` of the train split (seeded), or, when streaming, its first
    ``streaming_validation_size`` rows.
    """
    splits = _load_raw(spec, config, streaming)
    names = list(splits.keys())
    if train_split not in splits:
        raise TrainingError(
            f"--dataset {spec}: no split {train_split!r}; available splits: {', '.join(names)}"
        )
    train = splits[train_split]
    if validation_split and validation_split in splits and validation_split != train_split:
        return train, splits[validation_split]
    if streaming:
        return train.skip(streaming_validation_size), train.take(streaming_validation_size)
    if len(train) < 2:
        return train, train.select([])
    parts = train.train_test_split(test_size=validation_fraction, seed=seed, shuffle=True)
    return parts["train"], parts["test"]


@dataclass(frozen=True)
class Columns:
    """Which dataset columns hold what (``label`` and ``caption`` may be absent)."""

    image: str
    label: str | None = None
    caption: str | None = None


def _column_names(dataset) -> list[str]:
    names = getattr(dataset, "column_names", None)
    if names is None and getattr(dataset, "features", None) is not None:
        names = list(dataset.features)
    return list(names or [])


def resolve_columns(
    dataset,
    image_column: str | None = None,
    label_column: str | None = None,
    caption_column: str | None = None,
) -> Columns:
    """Check the named columns exist (naming the available ones if not) and fill defaults.

    Defaults: the image column is the first ``datasets.Image`` column (else ``image``); the label
    column is ``label`` when present; there is no caption column unless named.
    """
    import datasets

    names = _column_names(dataset)
    if not names:  # a stream whose features are unknown: trust the names given
        return Columns(image_column or "image", label_column, caption_column)
    available = ", ".join(names)

    def check(option: str, name: str) -> str:
        if name not in names:
            raise TrainingError(
                f"--{option} {name!r}: the dataset has no such column; available columns: "
                f"{available}"
            )
        return name

    if image_column is None:
        features = getattr(dataset, "features", None) or {}
        images = [n for n in names if isinstance(features.get(n), datasets.Image)]
        if images:
            image_column = images[0]
        elif "image" in names:
            image_column = "image"
        else:
            raise TrainingError(
                f"the dataset has no image column; available columns: {available}. "
                "Name it with --image_column"
            )
    image = check("image_column", image_column)
    label = check("label_column", label_column) if label_column else None
    if label_column is None and "label" in names:
        label = "label"
    caption = check("caption_column", caption_column) if caption_column else None
    return Columns(image, label, caption)


#: ``(caption cell, label cell) -> prompt``
CaptionRule = Callable[[Any, Any], str]


def caption_rule(
    dataset, columns: Columns, template: str | None, always: bool
) -> CaptionRule | None:
    """How each photo's caption is made: the caption column, else ``template`` (``{label}``
    is the label's name), else ``""``; ``None`` when there is no caption column and captions
    are not ``always`` wanted.
    """
    if columns.caption:
        return lambda caption, label: str(caption)
    if not always:
        return None
    if template is None:
        return lambda caption, label: ""
    if columns.label is None:
        if "{label}" in template:
            raise TrainingError(
                f"--caption_template {template!r} uses {{label}} but the dataset has no label "
                "column; name one with --label_column"
            )
        return lambda caption, label: template
    feature = (getattr(dataset, "features", None) or {}).get(columns.label)
    names = getattr(feature, "names", None)  # a ClassLabel's names (int -> str)

    def fill(caption: Any, label: Any) -> str:
        return template.format(label=names[int(label)] if names is not None else label).strip()

    return fill


# ---------------------------------------------------------------------------------------------
# decoding


def _to_rgb_array(value: Any) -> np.ndarray:
    """A dataset cell (PIL image, ``{bytes, path}`` dict, bytes, path, array) -> uint8 HxWx3."""
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
        value = data if data is not None else path
    if isinstance(value, (bytes, bytearray)):
        value = Image.open(io.BytesIO(value))
    elif isinstance(value, (str, os.PathLike)):
        value = Image.open(value)
    if isinstance(value, Image.Image):
        return np.array(value.convert("RGB"), dtype=np.uint8)  # writable, for torch
    array = np.asarray(value)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.dtype != np.uint8:
        raise TrainingError(f"expected 8-bit images in the dataset, got dtype {array.dtype}")
    return np.ascontiguousarray(array[..., :3])


def decode_images(dataset, column: str, num_threads: int | None = None) -> list[np.ndarray]:
    """Decode every image of ``column`` once into uint8 ``(H, W, 3)`` RGB arrays.

    The encoded bytes are read without Pillow objects in between and decoded in a thread pool
    (Pillow releases the GIL while decoding), so 20,000 64x64 JPEGs take seconds.
    """
    import datasets

    feature = dataset.features.get(column) if dataset.features else None
    if isinstance(feature, datasets.Image):
        dataset = dataset.cast_column(column, datasets.Image(decode=False))
    cells = dataset[column]
    threads = num_threads or min(8, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(_to_rgb_array, cells, chunksize=64))


def colourful_indices(images: Sequence[np.ndarray], threshold: float) -> list[int]:
    """Indices of the images whose colourfulness (Hasler & Suesstrunk) is at least ``threshold``."""
    return [i for i, rgb in enumerate(images) if colourfulness(rgb) >= threshold]


class LazyImages(Sequence):
    """Images decoded on access (datasets too large to cache); picklable for workers."""

    def __init__(self, dataset, column: str) -> None:
        self.dataset, self.column = dataset, column

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        return _to_rgb_array(self.dataset[int(index)][self.column])


# ---------------------------------------------------------------------------------------------
# augmentation


@dataclass(frozen=True)
class Augmentation:
    """Switchable augmentations; all off = resize the short side and centre-crop."""

    resolution: int = 64
    random_crop: bool = True
    crop_scale: tuple[float, float] = (0.5, 1.0)
    hflip: bool = True
    rotation: float = 0.0  # max degrees
    zoom: float = 0.0  # max +- fraction
    shear: float = 0.0  # max degrees
    reference_resolution: int | None = None

    def train_transform(self) -> v2.Transform:
        steps: list[v2.Transform] = []
        if self.rotation or self.zoom or self.shear:
            # before the crop, so the crop can cut away some of the empty corners
            steps.append(
                v2.RandomAffine(
                    degrees=self.rotation,
                    scale=(1.0 - self.zoom, 1.0 + self.zoom) if self.zoom else None,
                    shear=self.shear or None,
                    interpolation=v2.InterpolationMode.BILINEAR,
                )
            )
        if self.random_crop:
            steps.append(
                v2.RandomResizedCrop(self.resolution, scale=self.crop_scale, antialias=True)
            )
        else:
            steps += [v2.Resize(self.resolution, antialias=True), v2.CenterCrop(self.resolution)]
        if self.hflip:
            steps.append(v2.RandomHorizontalFlip())
        return v2.Compose(steps)

    def eval_transform(self) -> v2.Transform:
        return v2.Compose(
            [v2.Resize(self.resolution, antialias=True), v2.CenterCrop(self.resolution)]
        )

    def reference_transform(self) -> v2.Transform:
        """The exemplar's view: another crop, a perspective warp and a colour jitter.

        The jitter is mild: the model must learn to follow the reference's colours, which a
        strong hue shift would make a different answer.
        """
        size = self.reference_resolution or self.resolution
        return v2.Compose(
            [
                v2.RandomResizedCrop(size, scale=(0.4, 1.0), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.RandomPerspective(distortion_scale=0.25, p=0.7),
                v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.03),
            ]
        )


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's random choices (independent of workers and processes)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


def _chw(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)


class _SampleMaker:
    """Turns one decoded photo into a training/validation item with seeded randomness."""

    def __init__(
        self,
        augmentation: Augmentation,
        train: bool,
        reference: str | None,
        seed: int,
    ) -> None:
        self.augmentation, self.train, self.reference, self.seed = (
            augmentation,
            train,
            reference,
            seed,
        )
        self.transform = augmentation.train_transform() if train else augmentation.eval_transform()
        self.ref_transform = augmentation.reference_transform() if reference else None

    def make(
        self,
        rgb: np.ndarray,
        key: tuple[int, int],
        same_label: np.ndarray | None = None,
        other: Any = None,
    ) -> dict[str, Any]:
        """``key`` = (epoch, index); ``other(i)`` returns photo ``i`` for same-label references."""
        s = sample_seed(self.seed, *key)
        rng = np.random.default_rng(s)
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(s)
            item: dict[str, Any] = {"rgb": self.transform(_chw(rgb))}
            if self.ref_transform is not None:
                source = rgb
                use_label = self.reference == "label" or (
                    self.reference == "both" and rng.random() < 0.5
                )
                if use_label and same_label is not None and len(same_label) > 0:
                    source = other(int(rng.choice(same_label)))
                item["reference"] = self.ref_transform(_chw(source))
        return item


# ---------------------------------------------------------------------------------------------
# datasets


class ColorizationDataset(Dataset):
    """Map-style dataset over decoded photos (a list of arrays, or :class:`LazyImages`).

    Items: ``{"rgb": uint8 (3, R, R)}`` plus ``"reference"`` (uint8 ``(3, r, r)``; when
    ``reference`` is ``"own"``, ``"label"`` or ``"both"``), ``"label"`` (int) and ``"caption"``
    (str) when given. Call :meth:`set_epoch` before each epoch (the accelerate loop does); the
    epoch lives in shared memory, so persistent DataLoader workers follow it.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        *,
        augmentation: Augmentation,
        train: bool = True,
        labels: Sequence[int] | None = None,
        captions: Sequence[str] | None = None,
        reference: str | None = None,
        seed: int = 0,
    ) -> None:
        self.images, self.labels, self.captions = images, labels, captions
        self.maker = _SampleMaker(augmentation, train, reference, seed)
        # in shared memory: persistent DataLoader workers see the main process's set_epoch
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._by_label: dict[int, np.ndarray] = {}
        if labels is not None and reference in ("label", "both"):
            groups: dict[int, list[int]] = {}
            for i, label in enumerate(labels):
                groups.setdefault(int(label), []).append(i)
            self._by_label = {k: np.asarray(v) for k, v in groups.items()}

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        same = None
        if self._by_label:
            group = self._by_label[int(self.labels[index])]
            same = group[group != index]
        item = self.maker.make(
            self.images[index], (self.epoch, index), same, lambda i: self.images[i]
        )
        if self.labels is not None:
            item["label"] = int(self.labels[index])
        if self.captions is not None:
            item["caption"] = str(self.captions[index])
        return item


class StreamingColorizationDataset(IterableDataset):
    """Iterable dataset over a streamed ``datasets.IterableDataset`` (``--streaming``).

    Rows are decoded as they arrive; photos below ``min_colourfulness`` are skipped; references
    are the photo's own copy (a stream cannot look up other photos of the same label). With
    several DataLoader workers, worker ``w`` makes the batches ``w, w + W, ...`` so the order is
    the same as with one worker.
    """

    def __init__(
        self,
        stream,
        columns: Columns,
        *,
        augmentation: Augmentation,
        batch_size: int,
        train: bool = True,
        reference: str | None = None,
        min_colourfulness: float | None = None,
        captions: CaptionRule | None = None,
        seed: int = 0,
    ) -> None:
        self.stream, self.columns, self.batch_size = stream, columns, batch_size
        self.captions = captions
        self.maker = _SampleMaker(augmentation, train, "own" if reference else None, seed)
        self.min_colourfulness = min_colourfulness
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.stream, "set_epoch"):
            self.stream.set_epoch(self.epoch)  # reshuffles a shuffled stream

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker = get_worker_info()
        workers, me = (worker.num_workers, worker.id) if worker else (1, 0)
        kept = 0
        for row in self.stream:
            rgb = _to_rgb_array(row[self.columns.image])
            if self.min_colourfulness is not None and colourfulness(rgb) < self.min_colourfulness:
                continue
            index = kept
            kept += 1
            if (index // self.batch_size) % workers != me:
                continue
            item = self.maker.make(rgb, (self.epoch, index))
            if self.columns.label:
                item["label"] = int(row[self.columns.label])
            if self.captions is not None:
                item["caption"] = self.captions(
                    row.get(self.columns.caption), row.get(self.columns.label)
                )
            yield item


def to_lab_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """A collated batch (on its device) -> the models' batch: ``L`` (B,1,H,W) in [0, 100], ``ab``
    (B,2,H,W) in CIELAB units, ``reference`` RGB float in [0, 1], ``label`` long, ``caption``.
    """
    rgb = batch["rgb"].float().div_(255.0)
    lab = rgb_to_lab(rgb)
    out: dict[str, Any] = {"L": lab[:, :1].contiguous(), "ab": lab[:, 1:].contiguous()}
    if "reference" in batch:
        out["reference"] = batch["reference"].float().div_(255.0)
    if "label" in batch:
        out["label"] = batch["label"].long()
    if "caption" in batch:
        out["caption"] = list(batch["caption"])
    return out


# ---------------------------------------------------------------------------------------------
# everything from the command line


@dataclass
class TrainData:
    """What :func:`build_datasets` returns: the datasets and facts for the run's records."""

    train: Dataset | IterableDataset
    validation: Dataset
    columns: Columns
    num_train: int | None  # None when streaming
    num_validation: int
    num_filtered: int  # photos dropped by --min_colourfulness
    source: str


def _maybe_truncate(dataset, limit: int | None):
    if limit is None:
        return dataset
    if hasattr(dataset, "__len__"):
        return dataset.select(range(min(limit, len(dataset))))
    return dataset.take(limit)  # a stream


def _column(dataset, name: str | None) -> list | None:
    return None if name is None else list(dataset[name])


def _captions(rule: CaptionRule | None, captions: list | None, labels: list | None, n: int):
    if rule is None:
        return None
    return [
        rule(captions[i] if captions else None, labels[i] if labels else None) for i in range(n)
    ]


def augmentation_from_args(args) -> Augmentation:
    """The :class:`Augmentation` of ``-m train``'s options."""
    return Augmentation(
        resolution=args.resolution,
        random_crop=args.random_crop,
        crop_scale=tuple(args.crop_scale),
        hflip=args.hflip,
        rotation=args.rotation,
        zoom=args.zoom,
        shear=args.shear,
        reference_resolution=args.reference_resolution,
    )


def build_datasets(
    args,
    *,
    augmentation: Augmentation,
    reference: str | None = None,
    caption_template: str | None = None,
    always_caption: bool = False,
) -> TrainData:
    """The train and validation datasets described by the parsed arguments (shared options).

    ``reference``: the exemplar source (``"own"``, ``"label"``, ``"both"``) of a model that takes
    one, else ``None``; ``always_caption``: every item gets a ``"caption"`` (see
    :func:`caption_rule`). With ``--streaming`` the training set is a
    :class:`StreamingColorizationDataset` and ``num_train`` is ``None``.
    """
    train_raw, val_raw = load_dataset_splits(
        args.dataset,
        config=args.dataset_config,
        train_split=args.train_split,
        validation_split=args.validation_split,
        validation_fraction=args.validation_fraction,
        streaming=args.streaming,
        streaming_validation_size=args.max_validation_samples,
        seed=args.seed,
    )
    columns = resolve_columns(train_raw, args.image_column, args.label_column, args.caption_column)
    rule = caption_rule(train_raw, columns, caption_template, always_caption)
    train_raw = _maybe_truncate(train_raw, args.max_train_samples)
    val_raw = _maybe_truncate(val_raw, args.max_validation_samples)
    validation = _validation_dataset(args, val_raw, columns, rule, augmentation, reference)
    if args.streaming:
        train = StreamingColorizationDataset(
            train_raw.shuffle(seed=args.seed, buffer_size=1000),
            columns,
            augmentation=augmentation,
            batch_size=args.train_batch_size,
            reference=reference,
            min_colourfulness=args.min_colourfulness,
            captions=rule,
            seed=args.seed,
        )
        return TrainData(train, validation, columns, None, len(validation), 0, args.dataset)
    train, dropped = _map_style_train(args, train_raw, columns, rule, augmentation, reference)
    return TrainData(train, validation, columns, len(train), len(validation), dropped, args.dataset)


def _validation_dataset(args, val_raw, columns, rule, augmentation, reference):
    """The held-out photos, always decoded in memory (small by construction)."""
    if args.streaming:
        rows = list(val_raw)
        images = [_to_rgb_array(row[columns.image]) for row in rows]
        labels = [int(r[columns.label]) for r in rows] if columns.label else None
        captions = [r[columns.caption] for r in rows] if columns.caption else None
    else:
        images = decode_images(val_raw, columns.image) if len(val_raw) else []
        labels, captions = _column(val_raw, columns.label), _column(val_raw, columns.caption)
    return ColorizationDataset(
        images,
        augmentation=augmentation,
        train=False,
        labels=labels,
        captions=_captions(rule, captions, labels, len(images)),
        reference=reference,
        seed=args.seed + 1,
    )


def _map_style_train(args, train_raw, columns, rule, augmentation, reference):
    """(training dataset, photos dropped by --min_colourfulness) of a downloaded split."""
    if len(train_raw) == 0:
        raise TrainingError(
            f"the {args.train_split!r} split of {args.dataset!r} is empty: nothing to train on"
        )
    images: Sequence[np.ndarray]
    if args.cache_images or args.min_colourfulness is not None:
        images = decode_images(train_raw, columns.image)
    else:
        images = LazyImages(train_raw, columns.image)
    labels = _column(train_raw, columns.label)
    captions = _captions(rule, _column(train_raw, columns.caption), labels, len(images))
    dropped = 0
    if args.min_colourfulness is not None:
        keep = colourful_indices(images, args.min_colourfulness)
        dropped = len(images) - len(keep)
        if not keep:
            raise TrainingError(
                f"no training photo is left: all {len(images)} have colourfulness below "
                f"--min_colourfulness {args.min_colourfulness} (grayscale or nearly colourless)"
            )
        if args.cache_images:
            images = [images[i] for i in keep]
        else:  # free the decoded arrays, decode again on access
            images = LazyImages(train_raw.select(keep), columns.image)
        labels = None if labels is None else [labels[i] for i in keep]
        captions = None if captions is None else [captions[i] for i in keep]
    train = ColorizationDataset(
        images,
        augmentation=augmentation,
        train=True,
        labels=labels,
        captions=captions,
        reference=reference,
        seed=args.seed,
    )
    return train, dropped
