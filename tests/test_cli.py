import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepcolor.cli import main


def _write(path, size=(20, 14), color=(120, 60, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def test_models_lists_registry(capsys):
    assert main(["models", "-v"]) == 0
    out = capsys.readouterr().out
    assert "gray" in out and "tint" in out and "conditions:" in out and "weights:" in out


def test_help_everywhere(capsys):
    proc = subprocess.run(
        [sys.executable, "-m", "deepcolor.cli", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "usage: deepcolor" in proc.stdout
    for command in ("colorize", "evaluate", "models"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert f"usage: deepcolor {command}" in capsys.readouterr().out


def _outputs(out: Path) -> list[str]:
    """The files a run wrote under ``out``, but for its manifest."""
    files = (p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    return sorted(name for name in files if name != "manifest.csv")


def test_colorize_files_folders_and_failures(tmp_path, capsys):
    src = tmp_path / "in"
    _write(src / "a.png")
    _write(src / "nested" / "b.jpg")
    (src / "broken.png").write_bytes(b"not really a png")
    out = tmp_path / "out"
    code = main(["colorize", str(src), "-o", str(out), "--model", "tint"])
    captured = capsys.readouterr()
    assert code == 1  # one file failed
    written = _outputs(out)
    assert written == ["a.png", "nested/b.png"]  # a folder's subfolders are kept
    assert (out / "manifest.csv").is_file()  # beside them, the run manifest
    assert "broken.png" in captured.err and "not an image" in captured.err
    assert "broken.png: broken.png" not in captured.err  # the name is said once
    assert "2 of 3 image(s) written" in captured.out
    result = np.asarray(Image.open(out / "a.png"))
    assert result.shape == (14, 20, 3)


def test_colorize_never_overwrites(tmp_path, capsys):
    src = _write(tmp_path / "a.png")
    before = src.read_bytes()
    assert main(["colorize", str(src), "-o", str(tmp_path), "--model", "gray"]) == 1
    assert "overwrite an input" in capsys.readouterr().err
    assert src.read_bytes() == before
    out = tmp_path / "o"
    assert main(["colorize", str(src), "-o", str(out)]) == 0
    assert main(["colorize", str(src), "-o", str(out)]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["colorize", str(src), "-o", str(out), "--overwrite"]) == 0


def test_chroma_gain_reaches_the_model(tmp_path, capsys):
    """--chroma-gain 0 turns the shipped unet's colours off; a model without it says so."""
    src = _write(tmp_path / "a.png", size=(64, 48), color=(40, 120, 200))
    assert main(["colorize", str(src), "-o", str(tmp_path / "g"), "--chroma-gain", "0"]) == 0
    rgb = np.asarray(Image.open(tmp_path / "g" / "a.png")).astype(int)
    assert np.abs(rgb - rgb.mean(axis=2, keepdims=True)).max() <= 2  # gray
    code = main(
        ["colorize", str(src), "-o", str(tmp_path / "t"), "--model", "tint", "--chroma-gain", "2"]
    )
    assert code == 1 and "does not take chroma_gain" in capsys.readouterr().err


def test_glob_and_suffix(tmp_path):
    _write(tmp_path / "x" / "one.png")
    _write(tmp_path / "x" / "deep" / "two.png")
    out = tmp_path / "out"
    assert (
        main(["colorize", str(tmp_path / "x" / "**" / "*.png"), "-o", str(out), "--suffix=-c"]) == 0
    )
    written = _outputs(out)
    assert written == ["deep/two-c.png", "one-c.png"]  # below the glob's fixed folder


def test_same_named_photos_never_overwrite_each_other(tmp_path, capsys):
    """Scanner folders (1990/001.tif, 1991/001.tif) stay apart; two inputs that would still share
    one output (a.png and a.jpg) give one output and one clear failure, even with --overwrite."""
    src = tmp_path / "scans"
    _write(src / "1990" / "001.png", color=(200, 30, 30))
    _write(src / "1991" / "001.png", color=(30, 30, 200))
    _write(src / "a.png")
    _write(src / "a.jpg")
    out = tmp_path / "out"
    code = main(["colorize", str(src), "-o", str(out), "--model", "gray", "--overwrite"])
    captured = capsys.readouterr()
    assert code == 1
    written = _outputs(out)
    assert written == ["1990/001.png", "1991/001.png", "a.png"]
    assert "3 of 4 image(s) written" in captured.out
    clash = f"{src / 'a.png'}: {src / 'a.jpg'} is written to the same output {out / 'a.png'}"
    assert clash in captured.err
    # each output is its own photo's L, not the other's
    lum = [
        np.asarray(Image.open(out / y / "001.png").convert("L")).mean() for y in ("1990", "1991")
    ]
    assert abs(lum[0] - lum[1]) > 5


def test_a_rerun_into_a_subfolder_does_not_colourise_its_own_outputs(tmp_path, monkeypatch, capsys):
    """`colorize . -o out` twice: the second run skips out/ (no out/out/...), and a glob whose
    `..` climbs above its fixed folder still writes inside OUTDIR."""
    _write(tmp_path / "photos" / "a.png")
    _write(tmp_path / "photos" / "sub" / "b.png")
    monkeypatch.chdir(tmp_path / "photos")
    for _ in range(2):
        assert main(["colorize", ".", "-o", "out", "--model", "gray", "--overwrite"]) == 0
    written = sorted(p.relative_to("out").as_posix() for p in Path("out").rglob("*.png"))
    assert written == ["a.png", "sub/b.png"]
    assert "2 of 2 image(s) written" in capsys.readouterr().out
    assert main(["colorize", "*/../a.png", "-o", "up", "--model", "gray"]) == 0
    assert [p.as_posix() for p in Path("up").rglob("*.png")] == ["up/a.png"]


def test_outputs_are_readable_by_others_as_the_umask_says(tmp_path):
    """Atomic writes go through a temporary file; it must not keep mkstemp's private 0600 mode."""
    import os

    src = _write(tmp_path / "a.png")
    old = os.umask(0o022)
    try:
        assert main(["colorize", str(src), "-o", str(tmp_path / "o"), "--model", "gray"]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "o" / "a.png").stat().st_mode & 0o777 == 0o644
    assert not [p for p in (tmp_path / "o").iterdir() if p.name.startswith(".")]


def test_a_mistake_that_fails_every_photo_stops_at_once(tmp_path, capsys):
    """Bad conditions, a bad reference or a missing device: one error line, nothing written."""
    for name in ("a", "b", "c"):
        _write(tmp_path / "in" / f"{name}.png")
    cases = [
        (["--model", "tint", "--chroma-gain", "2"], "does not take chroma_gain"),
        (["--model", "blend", "--temperature", "0.3"], "does not take temperature"),
        (["--model", "exemplar"], "needs reference: give --reference PHOTO"),
        (["--model", "exemplar", "--reference", str(tmp_path / "none.png")], "none.png"),
        (["--chroma-gain", "-1"], "chroma_gain must be between 0 and 4"),
        (["--device", "tpu"], "unknown device 'tpu'"),
    ]
    for extra, message in cases:
        out = tmp_path / "out"
        assert main(["colorize", str(tmp_path / "in"), "-o", str(out), *extra]) == 1, extra
        err = capsys.readouterr().err
        assert err.count(message) == 1, (extra, err)
        assert "0/3" not in err, (extra, err)  # refused before the progress bar starts
        assert not out.exists() or not any(out.iterdir()), extra
    for option, value, message in [
        ("--batch-size", "0", "must be 1 or more"),
        ("--batch-size", "x", "invalid whole number value: 'x'"),
        ("--max-megapixels", "inf", "must be a number of megapixels"),
        ("--max-megapixels", "1e-9", "must be a number of megapixels"),
    ]:
        with pytest.raises(SystemExit):
            main(["colorize", str(tmp_path / "in"), "-o", str(tmp_path / "o"), option, value])
        assert message in capsys.readouterr().err


def test_clear_errors(tmp_path, capsys):
    _write(tmp_path / "a.png")
    assert main(["colorize", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "-m", "nope"]) == 1
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert main(["colorize", str(tmp_path / "none*.png"), "-o", str(tmp_path / "o")]) == 2
    assert "no input images" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["colorize", str(tmp_path / "a.png"), "-o", str(blocker / "sub")]) == 2
    assert "cannot create output folder" in capsys.readouterr().err


def test_evaluate_prints_table_and_writes_csv(tmp_path, capsys):
    for i, c in enumerate([(200, 30, 30), (30, 200, 30)]):
        _write(tmp_path / "set" / f"{i}.png", color=c)
    csv = tmp_path / "r.csv"
    assert (
        main(["evaluate", str(tmp_path / "set"), "-m", "gray", "-m", "tint", "--csv", str(csv)])
        == 0
    )
    out = capsys.readouterr().out
    assert "| gray | 2 |" in out and "| tint | 2 |" in out
    assert len(csv.read_text().strip().splitlines()) == 5


def test_evaluate_takes_conditions_and_writes_into_new_folders(tmp_path, capsys):
    """--chroma-gain reaches every photo (blend at 0 is gray); --markdown creates its folder."""
    for i, c in enumerate([(200, 30, 30), (30, 200, 30)]):
        _write(tmp_path / "set" / f"{i}.png", size=(64, 48), color=c)
    csv, md = tmp_path / "new" / "r.csv", tmp_path / "new" / "deeper" / "r.md"
    args = ["evaluate", str(tmp_path / "set"), "-m", "blend", "-m", "gray", "--csv", str(csv)]
    assert main([*args, "--chroma-gain", "0", "--markdown", str(md)]) == 1  # gray takes no gain
    captured = capsys.readouterr()
    assert "'gray' does not take chroma_gain" in captured.err
    assert "evaluating blend" not in captured.err  # refused before blend did any work
    assert not csv.parent.exists()
    args = ["evaluate", str(tmp_path / "set"), "-m", "blend", "--chroma-gain", "0"]
    assert main([*args, "--csv", str(csv), "--markdown", str(md)]) == 0
    assert md.read_text().startswith("| model |")
    import pandas as pd

    frame = pd.read_csv(csv)
    assert (frame["colourfulness"] < 0.5).all()  # gain 0: no colour at all


def test_evaluate_leaves_no_half_written_csv(tmp_path, capsys, monkeypatch):
    """A write that fails half-way (a full disk) is one error line and leaves no file behind."""
    import pandas as pd

    _write(tmp_path / "set" / "0.png")
    csv = tmp_path / "results" / "r.csv"

    def disk_full(frame, handle, **kwargs):
        handle.write(b"model,image\n")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", disk_full)
    assert main(["evaluate", str(tmp_path / "set"), "-m", "gray", "--csv", str(csv)]) == 1
    assert f"cannot write {csv}: No space left on device" in capsys.readouterr().err
    assert list(csv.parent.iterdir()) == []


def test_evaluate_refuses_a_grayscale_original(tmp_path, capsys):
    _write(tmp_path / "set" / "0.png")
    Image.new("L", (20, 14), 100).save(tmp_path / "set" / "1.png")
    assert main(["evaluate", str(tmp_path / "set"), "-m", "gray"]) == 1
    captured = capsys.readouterr()
    assert "1.png is grayscale" in captured.err
    assert "evaluating gray" not in captured.err  # checked before any model ran


@pytest.mark.slow
def test_evaluate_reproduces_kodak_baselines(shared_data, tmp_path, capsys):
    """The data README's baselines: gray / tint on Kodak24 (PSNR 22.46 / 23.61, ΔE 11.70 / 11.13)."""
    import pandas as pd

    csv = tmp_path / "k.csv"
    kodak = shared_data / "eval" / "kodak24"
    assert main(["evaluate", str(kodak), "-m", "gray", "-m", "tint", "--csv", str(csv)]) == 0
    means = pd.read_csv(csv).groupby("model")[["psnr", "ciede2000"]].mean()
    assert (
        abs(means.loc["gray", "psnr"] - 22.46) < 0.05
        and abs(means.loc["tint", "psnr"] - 23.61) < 0.05
    )
    assert abs(means.loc["gray", "ciede2000"] - 11.705) < 0.05
    assert abs(means.loc["tint", "ciede2000"] - 11.135) < 0.05
