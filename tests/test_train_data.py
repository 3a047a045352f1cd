"""train.data: loading Hub/local datasets, columns, decoding, augmentation, Lab batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_train_support import (
    make_photos,
    write_hub_layout,
    write_imagefolder,
    write_save_to_disk,
)
from torch.utils.data import DataLoader

from deepcolor.color import rgb_to_lab
from train.config import parse_args
from train.data import (
    Augmentation,
    ColorizationDataset,
    augmentation_from_args,
    build_datasets,
    colourful_indices,
    decode_images,
    load_dataset_splits,
    resolve_columns,
    to_lab_batch,
)
from train.errors import TrainingError


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def test_hub_layout_folder_loads_both_splits_and_decodes(tmp_path):
    folder = write_hub_layout(tmp_path / "hub", n_train=6, n_val=3, size=20)
    train, val = load_dataset_splits(str(folder))
    assert (len(train), len(val)) == (6, 3)
    columns = resolve_columns(train)
    assert (columns.image, columns.label, columns.caption) == ("image", "label", None)
    images = decode_images(train, "image")
    assert len(images) == 6 and images[0].shape == (20, 20, 3) and images[0].dtype == np.uint8
    np.testing.assert_array_equal(images[0], make_photos(6, size=20, seed=1)[0])  # PNG: lossless


def test_missing_split_is_carved_from_train_and_unknown_split_is_named(tmp_path):
    folder = write_imagefolder(tmp_path / "imgs", n=20)
    train, val = load_dataset_splits(str(folder), validation_fraction=0.25, seed=1)
    assert (len(train), len(val)) == (15, 5)
    assert resolve_columns(train).label == "label"  # imagefolder: class from the sub-folder
    with pytest.raises(TrainingError, match="no split 'nope'; available splits: train"):
        load_dataset_splits(str(folder), train_split="nope")


def test_save_to_disk_folder_and_streaming(tmp_path):
    folder = write_save_to_disk(tmp_path / "disk", n_train=5, n_val=2)
    train, val = load_dataset_splits(str(folder))
    assert (len(train), len(val)) == (5, 2)
    stream, _ = load_dataset_splits(str(folder), streaming=True)
    assert len(list(stream)) == 5


def test_unknown_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(TrainingError, match="cannot load the Hub dataset 'nobody/no-such-data'"):
        load_dataset_splits("nobody/no-such-data")


def test_missing_column_names_the_available_ones(tmp_path):
    train, _ = load_dataset_splits(str(write_hub_layout(tmp_path / "hub", 2, 0, captions=True)))
    assert resolve_columns(train, caption_column="text").caption == "text"
    with pytest.raises(TrainingError) as info:
        resolve_columns(train, image_column="photo")
    assert "'photo'" in str(info.value) and "available columns: image, label, text" in str(
        info.value
    )
    with pytest.raises(TrainingError, match="no such column"):
        resolve_columns(train, caption_column="caption")


def test_samples_are_seeded_by_epoch_and_index_not_by_worker():
    photos = make_photos(6, size=24)
    aug = Augmentation(resolution=16, rotation=10, zoom=0.1, shear=5)
    ds = ColorizationDataset(photos, augmentation=aug, seed=3, labels=[0] * 6, reference="both")
    first = ds[2]
    assert first["rgb"].shape == (3, 16, 16) and first["rgb"].dtype == torch.uint8
    assert first["reference"].shape == (3, 16, 16) and first["label"] == 0
    assert torch.equal(ds[2]["rgb"], first["rgb"])  # same epoch and index: same crop
    ds.set_epoch(1)
    assert not torch.equal(ds[2]["rgb"], first["rgb"])  # a new epoch draws new crops
    # the global RNG is neither used nor disturbed
    before = torch.random.get_rng_state()
    ds[0]
    assert torch.equal(before, torch.random.get_rng_state())
    # worker processes produce exactly what the main process does
    ds.set_epoch(0)
    one = next(iter(DataLoader(ds, batch_size=6, num_workers=0)))
    two = next(iter(DataLoader(ds, batch_size=6, num_workers=2)))
    assert torch.equal(one["rgb"], two["rgb"]) and torch.equal(one["reference"], two["reference"])


def test_persistent_workers_follow_set_epoch():
    ds = ColorizationDataset(make_photos(4, size=24), augmentation=Augmentation(resolution=16))
    loader = DataLoader(ds, batch_size=4, num_workers=1, persistent_workers=True)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        expected = torch.stack([ds[i]["rgb"] for i in range(4)])
        assert torch.equal(next(iter(loader))["rgb"], expected)


def test_label_references_come_from_other_photos_of_the_same_label():
    # one flat primary colour per photo; labels pair red with green and blue with yellow-ish
    colours = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0)]
    photos = [np.full((8, 8, 3), c, np.uint8) for c in colours]
    aug = Augmentation(resolution=8, random_crop=False, hflip=False)
    ds = ColorizationDataset(photos, augmentation=aug, labels=[0, 0, 1, 1], reference="label")
    for index, partner in ((0, 1), (1, 0), (2, 3), (3, 2)):
        ref = ds[index]["reference"].float().mean(dim=(1, 2)).numpy()
        # jitter and warp change the level a little, never which channels dominate
        assert np.array_equal(ref > 60, np.asarray(colours[partner]) > 0), (index, ref)


def test_eval_transform_is_resize_and_centre_crop():
    photo = make_photos(1, size=32)[0]
    ds = ColorizationDataset([photo], augmentation=Augmentation(resolution=16), train=False)
    item = ds[0]["rgb"]
    assert item.shape == (3, 16, 16)
    ds.set_epoch(5)
    assert torch.equal(ds[0]["rgb"], item)


def test_colourfulness_filter_drops_gray_photos():
    photos = make_photos(3) + make_photos(2, gray=True)
    assert colourful_indices(photos, 10.0) == [0, 1, 2]


def test_to_lab_batch_matches_colour_module():
    rgb = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    batch = to_lab_batch({"rgb": rgb, "label": torch.tensor([1, 0]), "caption": ["a", "b"]})
    lab = rgb_to_lab(rgb.float() / 255)
    assert torch.allclose(batch["L"], lab[:, :1]) and torch.allclose(batch["ab"], lab[:, 1:])
    assert batch["L"].shape == (2, 1, 8, 8) and batch["label"].dtype == torch.long
    assert batch["caption"] == ["a", "b"] and "rgb" not in batch


def _args(dataset, *extra):
    return parse_args(["--model", "x", "--dataset", str(dataset), "--output_dir", "unused", *extra])


def test_build_datasets_applies_filter_and_limits(tmp_path):
    folder = write_hub_layout(tmp_path / "hub", n_train=10, n_val=4)
    args = _args(folder, "--max_train_samples", "7", "--resolution", "16")
    data = build_datasets(args, augmentation=augmentation_from_args(args))
    assert (data.num_train, data.num_validation, data.num_filtered) == (7, 4, 0)
    assert set(data.train[0]) == {"rgb", "label"}
    gray = write_hub_layout(tmp_path / "gray", n_train=4, n_val=0, gray=True)  # 1 held out
    with pytest.raises(TrainingError, match="all 3 have colourfulness below"):
        args = _args(gray, "--min_colourfulness", "5")
        build_datasets(args, augmentation=augmentation_from_args(args))


def test_build_datasets_streaming_yields_references(tmp_path):
    folder = write_hub_layout(tmp_path / "hub", n_train=6, n_val=2)
    args = _args(folder, "--streaming", "--max_train_steps", "2", "--resolution", "16")
    data = build_datasets(args, augmentation=augmentation_from_args(args), reference="own")
    items = list(data.train)
    assert data.num_train is None and len(items) == 6 and data.num_validation == 2
    assert items[0]["reference"].shape == (3, 16, 16) and "label" in items[0]
