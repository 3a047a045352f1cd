import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage.color import deltaE_ciede2000

from deepcolor import ColorizationPipeline
from deepcolor.metrics import (
    ciede2000,
    colourfulness,
    evaluate,
    image_metrics,
    psnr,
    ssim,
    summarize,
    to_markdown,
)


def test_ciede2000_reproduces_sharma_pairs(shared_data):
    table = pd.read_csv(shared_data / "ciede2000_sharma.csv")
    assert len(table) == 34
    lab1 = table[["L1", "a1", "b1"]].to_numpy(dtype=float)
    lab2 = table[["L2", "a2", "b2"]].to_numpy(dtype=float)
    assert np.abs(deltaE_ciede2000(lab1, lab2) - table["dE00"].to_numpy()).max() < 1e-4


def test_colourfulness_hand_computed():
    img = np.zeros((2, 2, 3), np.uint8)
    img[0, 0] = (255, 0, 0)
    # rg = [255, 0, 0, 0], yb = [127.5, 0, 0, 0]
    rg, yb = np.array([255.0, 0, 0, 0]), np.array([127.5, 0, 0, 0])
    expected = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    assert colourfulness(img) == pytest.approx(expected)
    assert colourfulness(np.full((4, 4, 3), 90, np.uint8)) == 0


def test_identical_images():
    img = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    assert psnr(img, img) == float("inf")
    assert ssim(img, img) == pytest.approx(1.0)
    assert ciede2000(img, img) == 0
    m = image_metrics(img, img)
    assert m["delta_colourfulness"] == 0 and m["mse"] == 0


def test_shape_and_type_checks():
    a = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(a, np.zeros((8, 9, 3), np.uint8))
    with pytest.raises(TypeError):
        psnr(a, a.astype(float))


def test_evaluate_reproduces_baselines_on_a_subset(shared_data, tmp_path):
    ref = pd.read_csv(shared_data / "eval" / "baselines.csv")
    names = ["kodim01.png", "kodim07.png"]
    files = [shared_data / "eval" / "kodak24" / n for n in names]
    for method in ("gray", "tint"):
        frame = evaluate(
            ColorizationPipeline(method), files, csv_path=tmp_path / f"{method}.csv", progress=False
        )
        expected = ref[(ref.method == method) & ref.image.isin(names)].set_index("image")
        got = frame.set_index("image")
        for col in ("psnr", "ssim", "ciede2000"):
            assert np.allclose(got.loc[names, col], expected.loc[names, col], atol=1e-3), col
        assert (tmp_path / f"{method}.csv").is_file()


def test_summary_and_markdown(tmp_path):
    for i in range(3):
        arr = np.random.default_rng(i).integers(0, 255, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(arr).save(tmp_path / f"{i}.png")
    frame = evaluate(
        ColorizationPipeline("gray"), tmp_path, progress=False, markdown_path=tmp_path / "t.md"
    )
    assert len(frame) == 3 and set(frame.model) == {"gray"}
    summary = summarize(frame)
    assert summary.loc[0, "images"] == 3
    assert summary.loc[0, "psnr"] == pytest.approx(frame.psnr.mean())
    md = to_markdown(summary)
    assert md.splitlines()[0].startswith("| model | images |") and "| gray | 3 |" in md
    assert (tmp_path / "t.md").read_text().strip() == md


def test_evaluate_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no images"):
        evaluate(ColorizationPipeline("gray"), tmp_path, progress=False)
