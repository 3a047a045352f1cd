"""The stimuli a script cannot separate: the final treatment, the oracle, the audit battery,
sentinels that hide among model trials, and an inflation bot that the attention check excludes."""

from __future__ import annotations

import io
import shutil
import uuid

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from deepcolor.color import lab_to_rgb, rgb_to_lab
from deepcolor.images import to_uint8
from study.acceptance import make_photos
from study.audit import Features, audit_stimuli, audit_study, features_of
from study.cli import main
from study.manifest import media_path, read_manifest
from study.prepare import prepare_study
from study.server import create_app
from study.treatment import finish, lab_of, oracle_ab, project_chroma

TOKEN = "organiser-secret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PHOTOS = 24


def noisy_photo(seed: int, size=(128, 96)) -> np.ndarray:
    """A photo of moderate colours (smooth gradients, like skies and walls) with camera-like
    chroma noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    phase = seed * 0.7
    rgb = 128 + 45 * np.stack(
        [np.sin(3 * x + phase), np.sin(2 * y + 2 * phase), np.cos(2 * (x + y) + phase)], -1
    )
    return np.clip(rgb + rng.normal(0, 4, rgb.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A 2AFC study of the oracle and ECCV16 over noisy photos, with sentinels."""
    root = tmp_path_factory.mktemp("audit")
    photos = root / "photos"
    photos.mkdir()
    for i in range(PHOTOS):
        Image.fromarray(noisy_photo(i)).save(photos / f"p{i:02d}.png")
    out = root / "S"
    prepare_study(
        photos,
        ["oracle", "eccv16"],
        out,
        test_trials=PHOTOS - 2,
        practice_trials=2,
        sentinel_rate=0.3,
        sentinel_threshold=0.75,
        max_chance_pass=1.0,
        database_url=f"sqlite:///{out}/study.sqlite",
        progress=False,
        torch_threads=1,
        audit=False,
    )
    return out


def copy_of(study, tmp_path):
    folder = tmp_path / "S"
    shutil.copytree(study, folder)
    (folder / "study.sqlite").unlink()
    return folder


def stimuli(folder, condition):
    return {
        s.photo: media_path(folder, s.media_id)
        for s in read_manifest(folder).stimuli
        if s.condition == condition
    }


def test_the_treatment_is_a_projection_and_the_oracle_becomes_the_original():
    L, ab = lab_of(noisy_photo(3, (97, 61)))  # sizes that do not divide into 2 x 2 cells
    cell = project_chroma(ab, 2)
    assert torch.equal(project_chroma(cell, 2), cell)
    assert torch.allclose(cell[..., :2, :2].mean(dim=(-2, -1)), cell[..., 0, 0])
    assert np.array_equal(finish(L, oracle_ab(ab)), finish(L, ab))
    untreated = to_uint8(lab_to_rgb(torch.cat([L, ab], 1))[0].permute(1, 2, 0).numpy())
    assert not np.array_equal(finish(L, ab), untreated)


def test_every_stimulus_keeps_the_photos_lightness(study):
    real = stimuli(study, "real")
    for condition in ("oracle", "eccv16", "sentinel"):
        for photo, path in stimuli(study, condition).items():
            a = lab_of(np.asarray(Image.open(real[photo])))[0]
            b = lab_of(np.asarray(Image.open(path)))[0]
            if condition == "oracle":
                assert torch.equal(a, b)  # the oracle is the treated original, pixel for pixel
            else:  # the same L up to 8-bit rounding, and clipping of out-of-gamut colours
                assert float((a - b).abs().median()) < 0.5


def test_the_audit_finds_every_rule_at_chance_on_the_oracle(study, capsys):
    main(["audit", str(study)])
    out = capsys.readouterr().out
    assert "oracle: every rule at chance - the stimuli leak no processing artefacts" in out
    result = audit_study(study)
    assert result.photos == PHOTOS and result.oracle_ok
    assert {s.accuracy for s in result.scores["oracle"].values()} == {0.5}
    assert {s.p for s in result.scores["oracle"].values()} == {1.0}
    # ECCV16's fakes are told from the originals by texture rules, as a smooth model's are.
    assert result.scores["eccv16"]["more chroma noise (3x3 residual) = real"].accuracy == 1.0


def features(seed: int, saturation: float, colours: int) -> Features:
    rng = np.random.default_rng(seed)
    return Features(
        colours=colours + int(rng.integers(0, 500)),
        chroma_noise=float(rng.uniform(0.1, 0.3)),
        chroma_hf=float(rng.uniform(0, 0.01)),
        block16=float(rng.uniform(0.9, 1.1)),
        block8=float(rng.uniform(0.9, 1.1)),
        saturation=saturation + float(rng.uniform(-5, 5)),
        clipped=0.0,
        luma_noise=1.0,
        size=1000,
        dims=(64, 48),
        chunks=(),
    )


@pytest.mark.parametrize("shift, hidden", [(0, True), (800, False)])
def test_sentinels_are_judged_by_a_held_out_classifier(shift, hidden):
    photos = [f"p{i}" for i in range(60)]
    stimuli = {
        "real": {p: features(i, 30, 20_000) for i, p in enumerate(photos)},
        "m": {p: features(1000 + i, 12, 2_000) for i, p in enumerate(photos)},
        "sentinel": {p: features(2000 + i, 12, 2_000 + shift) for i, p in enumerate(photos)},
    }
    result = audit_stimuli(stimuli, dict.fromkeys(photos, "m"))
    assert result.sentinels_ok is hidden and result.ok is hidden
    if hidden:
        assert result.sentinel_accuracy <= 0.6
    else:
        assert result.sentinel_accuracy > 0.95 and "distinct colours" in result.sentinel_statistic


def test_untreated_originals_fail_the_audit_with_the_rules_that_read_them(study, tmp_path, capsys):
    folder = copy_of(study, tmp_path)
    for photo, path in stimuli(folder, "real").items():
        Image.fromarray(noisy_photo(int(photo[1:]))).save(path, compress_level=0)
    assert main(["audit", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "oracle: FAILED - these rules tell the original from a perfect colourisation: " in out
    assert "more chroma noise (3x3 residual) = real" in out.split("oracle: FAILED")[1]
    assert out.rstrip().endswith("audit: FAILED")


def legacy_sentinel(rgb: np.ndarray) -> np.ndarray:
    """The sentinels of old: the original's colours inverted and exaggerated (ab * -1.6)."""
    x = torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
    lab = rgb_to_lab(x)
    lab[:, 1:] = (lab[:, 1:] * -1.6).clamp(-110, 110)
    return to_uint8(lab_to_rgb(lab)[0].permute(1, 2, 0).clamp(0, 1).numpy())


def with_legacy_sentinels(study, tmp_path):
    folder = copy_of(study, tmp_path)
    for photo, path in stimuli(folder, "sentinel").items():
        Image.fromarray(legacy_sentinel(noisy_photo(int(photo[1:])))).save(path, compress_level=0)
    return folder


def test_sentinels_unlike_the_model_trials_fail_the_audit(study, tmp_path, capsys):
    folder = with_legacy_sentinels(study, tmp_path)
    assert main(["audit", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "sentinels: FAILED - can be told from the model trials (classifier on " in out
    assert out.rstrip().endswith("audit: FAILED")


def test_prepare_accepts_the_oracle_and_runs_the_audit(tmp_path, capsys):
    photos = make_photos(tmp_path / "p", 6)
    args = ["prepare", "--images", str(photos), "--trials", "4", "--sentinel-rate", "0"]
    assert main([*args, "--models", "oracle,gray", "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "oracle: every rule at chance - the stimuli leak no processing artefacts" in err
    assert "sentinels: 6 photos, too few to judge (the audit needs 20)" in err
    assert f"audit: passed - run it again with: python -m study audit {tmp_path / 'o'}" in err
    assert read_manifest(tmp_path / "o").models == ["oracle", "gray"]
    assert main([*args, "--models", "real", "--out", str(tmp_path / "r")]) == 2
    assert "'real' is reserved for the study's own conditions" in capsys.readouterr().err


# --- the inflation bot ----------------------------------------------------------------------------
def inflation_bot(client) -> int:
    """A script that inflates the models' acceptance: in each trial it takes the image with
    fewer distinct colours for the fake and answers the other one (so the model "fooled" it),
    except where it thinks the trial is a sentinel: a fake more saturated than the original
    (as the sentinels of old were) gets answered right, to pass the attention check."""
    state = client.post("/api/join", json={"consent": True}).json()
    token = state["token"]
    while not state["done"]:
        trial = state["trial"]
        images = []
        for path in trial["images"]:
            data = client.get(path).content
            images.append(features_of(data, np.asarray(Image.open(io.BytesIO(data)))))
        fewer = 0 if images[0].colours < images[1].colours else 1
        more_saturated = 0 if images[0].saturation > images[1].saturation else 1
        ratio = max(i.saturation for i in images) / max(min(i.saturation for i in images), 1e-9)
        if ratio > 1.15 and more_saturated == fewer or ratio > 1.3:  # "a sentinel"
            fake = more_saturated
        else:
            fake = 1 - fewer  # claim the original is the fake: the model "fooled" it
        body = {"trial": trial["id"], "answer": ("left", "right")[fake], "key": uuid.uuid4().hex}
        state = client.post(f"/api/p/{token}/answer", json=body).json()
    return token


def run_bot(folder):
    app = create_app(folder, organiser_token=TOKEN, database_url=f"sqlite:///{folder}/db.sqlite")
    try:
        with TestClient(app) as client:
            inflation_bot(client)
            return client.get("/organiser/summary.json", headers=AUTH).json()
    finally:
        app.app.state.service.db.dispose()


def test_the_inflation_bot_fails_the_attention_check_and_is_excluded(study, tmp_path):
    summary = run_bot(copy_of(study, tmp_path / "now"))
    assert summary["participation"]["finished"] == 1
    assert summary["excluded"] == 1
    # The same bot against the sentinels of old passes the check and counts.
    legacy = run_bot(with_legacy_sentinels(study, tmp_path / "before"))
    assert legacy["excluded"] == 0
