"""Resumable runs over many files: --skip-existing, the run manifest, and the split of the work
across processes under ``accelerate launch`` (two CPU processes over gloo)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from deepcolor.cli import main
from deepcolor.manifest import COLUMNS, ManifestRow, ManifestWriter, merge_manifest, read_manifest

ROOT = Path(__file__).resolve().parent.parent


def _photos(folder: Path, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        path = folder / ("sub" if i % 2 else "") / f"p{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (24, 16), (40 + 7 * i, 90, 160 - 5 * i)).save(path)
        paths.append(path)
    return paths


def _rows(manifest: Path) -> list[dict]:
    with manifest.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_skip_existing_continues_a_run_and_keeps_one_row_per_input(tmp_path, capsys):
    photos = _photos(tmp_path / "in", 4)
    out = tmp_path / "out"
    assert main(["colorize", str(photos[0]), str(photos[2]), "-o", str(out), "-m", "tint"]) == 0
    first = {row["input"]: row for row in _rows(out / "manifest.csv")}
    assert {r["status"] for r in first.values()} == {"ok"} and len(first) == 2
    capsys.readouterr()

    # the whole folder again: without --skip-existing the two finished outputs are failures
    assert main(["colorize", str(tmp_path / "in"), "-o", str(out), "-m", "tint"]) == 1
    said = capsys.readouterr()
    assert "2 of 4 image(s) failed" in said.err and "--skip-existing to keep it" in said.err
    assert "2 of 4 image(s) written" in said.out  # the other two

    skip = ["colorize", str(tmp_path / "in"), "-o", str(out), "-m", "tint", "--skip-existing"]
    assert main(skip) == 0
    said = capsys.readouterr().out
    assert "0 of 4 image(s) written to" in said and "4 skipped (already done)" in said
    rows = _rows(out / "manifest.csv")
    assert sorted(r["input"] for r in rows) == sorted(str(p) for p in photos)  # each once
    by_input = {r["input"]: r for r in rows}
    # the first run's rows survive the reruns: what wrote each output, and when
    for name, row in first.items():
        assert by_input[name]["status"] == "ok" and by_input[name]["finished"] == row["finished"]
    assert {r["model"] for r in rows} == {"tint"} and {r["weights"] for r in rows} == {"default"}
    assert not list(out.glob("manifest.part-*"))  # the parts are merged away


def test_skip_existing_and_overwrite_exclude_each_other(tmp_path, capsys):
    _photos(tmp_path / "in", 1)
    with pytest.raises(SystemExit):
        main(["colorize", str(tmp_path / "in"), "-o", "o", "--skip-existing", "--overwrite"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_killed_writers_torn_line_is_dropped_and_its_part_merged(tmp_path):
    manifest = tmp_path / "manifest.csv"
    part = tmp_path / "manifest.part-1-999.csv"
    with ManifestWriter(part) as writer:
        writer.write(ManifestRow("a.png", "o/a.png", "tint", "default", 0.5, "ok"))
        writer.write(
            ManifestRow(
                'b "odd", name.png',
                "o/b.png",
                "tint",
                "default",
                0.1,
                "failed",
                reason="not an image\nat all",
            )
        )
    with part.open("a") as handle:
        handle.write("c.png,o/c.png,tint,def")  # killed in the middle of a row
    rows = read_manifest(part)
    assert [r.input for r in rows] == ["a.png", 'b "odd", name.png']
    assert rows[1].reason == "not an image\nat all" and rows[0].seconds == 0.5
    merged = merge_manifest(manifest)
    assert [r.input for r in merged] == ["a.png", 'b "odd", name.png']
    assert not part.exists() and read_manifest(manifest) == merged
    assert manifest.read_text().splitlines()[0] == ",".join(COLUMNS)


def test_a_file_that_is_not_a_manifest_is_refused(tmp_path):
    from deepcolor.errors import DeepColorError

    other = tmp_path / "manifest.csv"
    other.write_text("name,score\nx,1\n")
    with pytest.raises(DeepColorError, match="not a DeepColor run manifest"):
        merge_manifest(other)


def test_python_m_deepcolor_is_the_cli():
    done = subprocess.run(
        [sys.executable, "-m", "deepcolor", "colorize", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "--skip-existing" in done.stdout


@pytest.mark.slow
def test_two_cpu_processes_split_photos_and_clips_each_exactly_once(tmp_path):
    from test_video import _frames, write_clip

    photos = _photos(tmp_path / "in", 9)
    (tmp_path / "in" / "clips").mkdir()
    clip = write_clip(tmp_path / "in" / "clips" / "home.mov", _frames(count=3))
    out = tmp_path / "out"
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    launcher += ["--num_processes", "2", "--num_machines", "1", "--main_process_port", "0"]
    launcher += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    command = ["-m", "deepcolor", "colorize", str(tmp_path / "in"), "-o", str(out), "-m", "tint"]
    env = os.environ | {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*launcher, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _rows(out / "manifest.csv")
    inputs = sorted(str(p) for p in [*photos, clip])
    assert sorted(r["input"] for r in rows) == inputs  # every input exactly once
    assert {r["status"] for r in rows} == {"ok"}
    assert {r["process"] for r in rows} == {"0", "1"}  # both processes did work
    assert (out / "clips" / "home.mp4").is_file() and (out / "sub" / "p001.png").is_file()
    assert "9 of 9 image(s) written" in done.stdout
    assert not list(out.glob("manifest.part-*"))
