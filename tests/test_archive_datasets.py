"""Datasets in and out: a local Parquet or image-folder dataset, streamed through the real
``datasets`` code path, colourised into a Parquet dataset that keeps every column; resumable by
shard; pushing without the network is a clear error before any work."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image

from deepcolor.cli import main


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def _photo(i: int, size=(20, 12)) -> Image.Image:
    gray = (np.arange(size[0] * size[1]).reshape(size[1], size[0]) * (i + 3)) % 256
    return Image.fromarray(gray.astype(np.uint8)).convert("RGB")


def _parquet_dataset(folder, count: int, *, broken: int | None = None):
    import datasets

    images = []
    for i in range(count):
        handle = io.BytesIO()
        _photo(i).save(handle, format="PNG")
        data = b"not an image at all" if i == broken else handle.getvalue()
        images.append({"bytes": data, "path": f"p{i}.png"})
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "caption": datasets.Value("string"),
            "n": datasets.Value("int32"),
        }
    )
    table = datasets.Dataset.from_dict(
        {"image": images, "caption": [f"photo {i}" for i in range(count)], "n": list(range(count))},
        features=features,
    )
    (folder / "data").mkdir(parents=True)
    table.to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    return folder


def _load(folder):
    import datasets

    return datasets.load_dataset(str(folder), split="train")


def _manifest(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_parquet_dataset_is_colourised_into_a_dataset_with_its_columns(tmp_path, capsys):
    source = _parquet_dataset(tmp_path / "src", 7, broken=4)
    out = tmp_path / "dst"
    args = ["colorize", "--dataset", str(source), "--save-dataset", str(out), "-m", "tint"]
    code = main([*args, "--rows-per-shard", "3", "--batch-size", "2"])
    said = capsys.readouterr()
    assert code == 1  # one row failed
    assert "6 of 7 row(s) colourised" in said.out
    assert "not an image" in said.err and "#4" in said.err
    shards = sorted(p.name for p in (out / "data").iterdir())
    assert shards == [f"train-00000-of-00001-{k:05d}.parquet" for k in range(3)]
    result = _load(out)
    assert result.column_names == ["image", "caption", "n", "colorized"]
    assert result["n"] == list(range(7)) and result["caption"][2] == "photo 2"
    assert result.select_columns(["colorized"])[4]["colorized"] is None  # its image: as it was
    first = result[0]
    assert first["colorized"].size == first["image"].size == (20, 12)
    assert np.array_equal(np.asarray(first["image"]), np.asarray(_photo(0)))  # kept as it was
    colour = np.asarray(first["colorized"].convert("RGB")).astype(int)
    assert np.abs(colour[..., 0] - colour[..., 2]).max() > 0  # tint: no longer gray
    rows = _manifest(out / "manifest.csv")
    assert len(rows) == 7 and {r["status"] for r in rows} == {"ok", "failed"}
    assert "train-00000-of-00001-00001.parquet" in rows[4]["output"]


def test_a_rerun_continues_after_the_complete_shards(tmp_path, capsys):
    source = _parquet_dataset(tmp_path / "src", 7)
    out = tmp_path / "dst"
    args = ["colorize", "--dataset", str(source), "--save-dataset", str(out), "-m", "tint"]
    args += ["--rows-per-shard", "3"]
    assert main(args) == 0
    last = out / "data" / "train-00000-of-00001-00002.parquet"
    kept = (out / "data" / "train-00000-of-00001-00000.parquet").stat().st_mtime_ns
    last.unlink()  # as if the run had been killed while writing its last shard
    (out / "data" / ".deepcolor-0123.parquet").write_bytes(b"half a shard")
    capsys.readouterr()
    assert main(args) == 1
    assert "--skip-existing to continue" in capsys.readouterr().err
    assert main([*args, "--skip-existing"]) == 0
    assert "1 of 1 row(s) colourised" in capsys.readouterr().out  # the lost shard only
    assert (out / "data" / "train-00000-of-00001-00000.parquet").stat().st_mtime_ns == kept
    assert not (out / "data" / ".deepcolor-0123.parquet").exists()
    assert _load(out)["n"] == list(range(7))
    assert len(_manifest(out / "manifest.csv")) == 7  # every row once
    # another shard size would not line up with the shards kept: refused, not mixed
    assert main([*args[:-1], "4", "--skip-existing"]) == 1
    assert "rows_per_shard 3 -> 4" in capsys.readouterr().err


def test_an_image_folder_dataset_named_as_hf_path_needs_its_image_column(tmp_path, capsys):
    folder = tmp_path / "imgs" / "train"
    folder.mkdir(parents=True)
    for i in range(3):
        _photo(i).save(folder / f"{i}.png")
    out = tmp_path / "dst"
    base = ["colorize", "--dataset", str(tmp_path / "imgs"), "--save-dataset", str(out)]
    assert main([*base, "-m", "tint", "--image-column", "picture"]) == 1
    assert "has no column 'picture'; its columns are image" in capsys.readouterr().err
    assert main([*base, "-m", "tint"]) == 0
    assert _load(out).column_names == ["image", "colorized"] and len(_load(out)) == 3


def test_hub_paths_and_mistakes_are_clear_one_line_errors(tmp_path, capsys, monkeypatch):
    from deepcolor.errors import DeepColorError
    from deepcolor.hub_datasets import parse_source

    assert parse_source("hf://datasets/me/photos:test").path == "me/photos"
    assert parse_source("hf://datasets/me/photos:test").split == "test"
    assert parse_source("hf://datasets/me/photos", "val").split == "val"
    with pytest.raises(DeepColorError, match="hf://datasets/OWNER/NAME"):
        parse_source("hf://datasets/photos")
    source = _parquet_dataset(tmp_path / "src", 2)
    capsys.readouterr()
    cases = [
        (["colorize", "--dataset", str(source), "-m", "tint"], "--save-dataset DIR"),
        (["colorize", "a.png", "-o", "o", "--split", "x"], "--split is for datasets"),
        (["colorize", "hf://datasets/a/b", "--dataset", "c"], "one dataset at a time"),
        (["colorize", "-o", "o"], "give the files, folders or globs"),
        (["colorize", "a.png"], "-o OUTDIR"),
        (
            ["colorize", "--dataset", str(tmp_path / "none"), "--save-dataset", "d", "-m", "tint"],
            "dataset",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1, (argv, err)


def test_pushing_offline_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    source = _parquet_dataset(tmp_path / "src", 2)
    capsys.readouterr()
    out = tmp_path / "dst"
    argv = ["colorize", "--dataset", str(source), "--save-dataset", str(out), "-m", "tint"]
    assert main([*argv, "--push-to-hub", "me/colour"]) == 1
    err = capsys.readouterr().err
    assert "HF_HUB_OFFLINE is set, so nothing can be uploaded" in err
    assert not out.exists()
