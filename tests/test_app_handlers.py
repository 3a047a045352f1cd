"""The app's handlers (deepcolor.ui), driven directly: no server, no browser."""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import rgb2lab

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from deepcolor.color import ab_to_bins  # noqa: E402
from deepcolor.errors import (  # noqa: E402
    DeepColorError,
    ImageTooLarge,
    InvalidCondition,
    InvalidImage,
    ModelUnavailable,
)
from deepcolor.metrics import image_metrics  # noqa: E402
from deepcolor.models.base import Colorizer  # noqa: E402
from deepcolor.models.baselines import GrayColorizer, TintColorizer  # noqa: E402
from deepcolor.registry import DEFAULT_AUTOMATIC, ColorizerInfo  # noqa: E402
from deepcolor.ui import AppSettings, ModelCatalog  # noqa: E402
from deepcolor.ui import batch as batch_ui  # noqa: E402
from deepcolor.ui import compare as compare_ui  # noqa: E402
from deepcolor.ui import conditioned as conditioned_ui  # noqa: E402
from deepcolor.ui import guided as guided_ui  # noqa: E402
from deepcolor.ui.common import load_input, user_errors, work_dir  # noqa: E402
from deepcolor.ui.examples import example_photos  # noqa: E402
from deepcolor.ui.models import device_label, model_lines, models_markdown, probe  # noqa: E402

RED_AB = (80.0, 67.0)  # roughly pure red's chroma


# --- small real models for the conditions the registry may not have yet -------------------------
class HintMean(Colorizer):
    """Every pixel takes the mean colour of the hints (none: gray); a bin distribution."""

    name = "hintmean"
    accepts = ("hints", "global_hints")

    def __init__(self) -> None:
        super().__init__(working_size=32)
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, L, hints=None, global_hints=None):
        ab = torch.zeros(L.shape[0], 2, *L.shape[-2:], dtype=L.dtype, device=L.device)
        if hints is not None:
            hint_ab, mask = hints
            total = mask.sum(dim=(2, 3)).clamp(min=1)
            ab = ab + ((hint_ab * mask).sum(dim=(2, 3)) / total)[..., None, None]
        if global_hints and "saturation" in global_hints:
            ab = ab + global_hints["saturation"].view(-1, 1, 1, 1) * 50
        return ab * self.scale

    def training_loss(self, batch):
        return (self.forward(batch["L"]) - batch["ab"]).abs().mean()

    def bin_distribution(self, L):
        # All mass on red's bin in the left half of the picture, on blue's in the right half.
        cells = (L.shape[-2] + 3) // 4, (L.shape[-1] + 3) // 4
        probs = torch.zeros(L.shape[0], 313, *cells)
        red = int(ab_to_bins(torch.tensor(RED_AB).view(1, 2, 1, 1)).flatten()[0])
        blue = int(ab_to_bins(torch.tensor([20.0, -80.0]).view(1, 2, 1, 1)).flatten()[0])
        half = cells[1] // 2
        probs[:, red, :, :half] = 1.0
        probs[:, blue, :, half:] = 1.0
        return probs


class ReferenceMean(Colorizer):
    """Paints the reference photo's mean chroma everywhere."""

    name = "refmean"
    needs = ("reference",)

    def __init__(self) -> None:
        super().__init__(working_size=None)

    def forward(self, L, reference=None):
        from deepcolor.color import rgb_to_lab

        mean = rgb_to_lab(reference.float())[:, 1:].mean(dim=(2, 3))
        return mean[..., None, None].expand(L.shape[0], 2, *L.shape[-2:]).to(L.dtype)


@pytest.fixture(scope="module")
def catalog() -> ModelCatalog:
    models = {"gray": GrayColorizer(), "tint": TintColorizer(), "hintmean": HintMean()}
    models["refmean"] = ReferenceMean()
    return ModelCatalog(AppSettings(max_megapixels=1.0), models=models, include_registry=False)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A colourful 96x64 photo: four coloured quadrants with a gradient."""
    h, w = 64, 96
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[: h // 2, : w // 2] = (200, 40, 40)
    rgb[: h // 2, w // 2 :] = (40, 160, 60)
    rgb[h // 2 :, : w // 2] = (50, 70, 200)
    rgb[h // 2 :, w // 2 :] = (220, 200, 60)
    rgb = np.clip(rgb.astype(int) + np.linspace(-30, 30, w, dtype=int)[None, :, None], 0, 255)
    path = tmp_path_factory.mktemp("photos") / "quadrants.png"
    Image.fromarray(rgb.astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def gray_photo(photo, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "old.png"
    Image.open(photo).convert("L").save(path)
    return path


def _png(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


# --- models ----------------------------------------------------------------------------------------
def test_registry_models_are_listed_with_reasons_and_baselines_are_available():
    catalog = ModelCatalog()
    statuses = {s.name: s for s in catalog.statuses()}
    assert statuses["gray"].available and statuses["tint"].available
    for status in statuses.values():
        assert status.available or status.reason  # an unavailable model always says why
    assert catalog.default_model() in catalog.available(automatic=True)
    if DEFAULT_AUTOMATIC in catalog.available():
        assert catalog.default_model() == DEFAULT_AUTOMATIC
    table = models_markdown(catalog)  # the Models tab: every model, and why one cannot run
    for status in statuses.values():
        line = next(row for row in table.splitlines() if row.startswith(f"| `{status.name}` |"))
        assert ("| available" in line) == status.available
        if not status.available:
            assert status.reason[:40].replace("|", "/") in line


def test_probe_reports_missing_weights_without_loading(tmp_path):
    def factory():  # never called: probing must not build the model
        raise AssertionError("probe built the model")

    missing = ColorizerInfo(
        name="ghost", factory=factory, summary="s", default_weights="shipped:ghost"
    )
    status = probe(missing)
    assert not status.available and "missing from this installation" in status.reason
    folder = tmp_path / "w"
    folder.mkdir()
    present = ColorizerInfo(name="ghost", factory=factory, summary="s", default_weights=str(folder))
    assert probe(present).available


def test_default_model_prefers_the_default_automatic_then_learned_then_tint():
    tint_only = ModelCatalog(
        models={"tint": TintColorizer(), "gray": GrayColorizer()}, include_registry=False
    )
    assert tint_only.default_model() == "tint"
    with_learned = ModelCatalog(
        models={"tint": TintColorizer(), "zz": HintMean()}, include_registry=False
    )
    assert with_learned.default_model() == "zz"
    with_default = ModelCatalog(
        models={"tint": TintColorizer(), "aa": HintMean(), DEFAULT_AUTOMATIC: HintMean()},
        include_registry=False,
    )
    assert with_default.default_model() == DEFAULT_AUTOMATIC


def test_pipelines_are_loaded_once_and_unavailable_models_refused(catalog):
    assert catalog.pipeline("tint") is catalog.pipeline("tint")
    assert "tint" in catalog.loaded()
    registry_catalog = ModelCatalog()
    missing = [s for s in registry_catalog.statuses() if not s.available]
    if missing:
        with pytest.raises(ModelUnavailable, match=missing[0].name):
            registry_catalog.pipeline(missing[0].name)
    with pytest.raises(DeepColorError, match="unknown model"):
        catalog.status("no-such-model")


# --- compare ---------------------------------------------------------------------------------------
def test_compare_two_models_full_resolution_and_metrics(catalog, photo):
    result = compare_ui.compare(str(photo), ["tint", "gray"], catalog)
    original = np.asarray(Image.open(photo).convert("RGB"))
    assert [o.name for o in result.outputs] == ["tint", "gray"]
    assert result.has_ground_truth and result.size == (96, 64)
    for out in result.outputs:
        saved = _png(out.png)
        assert saved.shape == original.shape
        np.testing.assert_array_equal(saved, out.rgb)
        # the luminance is the input's
        assert np.abs(rgb2lab(saved)[..., 0] - rgb2lab(original)[..., 0]).mean() < 1.0
    rows = result.metrics.set_index("model")
    expected = image_metrics(original, result.outputs[0].rgb)
    assert rows.loc["tint", "PSNR (dB)"] == pytest.approx(expected["psnr"], abs=0.01)
    assert rows.loc["tint", "CIEDE2000"] == pytest.approx(expected["ciede2000"], abs=0.001)
    assert rows.loc["gray", "colourfulness"] < 1.0
    assert rows.loc["original (ground truth)", "colourfulness"] > 30
    gray = _png(result.gray_png)
    assert np.ptp(gray.astype(int), axis=2).max() <= 1  # the slider's "before" is gray


def test_compare_without_ground_truth_shows_only_colourfulness(catalog, gray_photo):
    result = compare_ui.compare(str(gray_photo), "tint", catalog)
    assert not result.has_ground_truth
    row = result.metrics.iloc[0]
    assert pd_isna(row["PSNR (dB)"]) and row["colourfulness"] > 0
    assert "no colour original" in result.summary()
    assert "Processing: smooth (exact CIELAB" in result.summary()


def pd_isna(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


class GainTint(Colorizer):
    """A constant orange whose strength follows ``chroma_gain`` (default 1.5, like unet)."""

    name = "gaintint"
    accepts = ("chroma_gain",)

    def __init__(self) -> None:
        super().__init__(working_size=None)
        self.chroma_gain = 1.5

    def forward(self, L, chroma_gain=None):
        gain = self.chroma_gain if chroma_gain is None else chroma_gain
        ab = torch.tensor([8.0, 12.0], dtype=L.dtype).view(1, 2, 1, 1) * gain
        return ab.expand(L.shape[0], 2, *L.shape[-2:])


def test_color_strength_scales_models_that_take_a_gain(gray_photo):
    gain_catalog = ModelCatalog(
        AppSettings(max_megapixels=1.0),
        models={"gaintint": GainTint(), "tint": TintColorizer()},
        include_registry=False,
    )

    def chroma(result, name):
        out = next(o for o in result.outputs if o.name == name)
        return float(np.hypot(*rgb2lab(out.rgb / 255.0)[..., 1:].mean(axis=(0, 1)).T))

    shipped = compare_ui.compare(str(gray_photo), ["gaintint", "tint"], gain_catalog)
    double = compare_ui.compare(str(gray_photo), ["gaintint", "tint"], gain_catalog, 2.0)
    gray = compare_ui.compare(str(gray_photo), ["gaintint"], gain_catalog, 0.0)
    assert chroma(shipped, "gaintint") == pytest.approx(1.5 * np.hypot(8, 12), rel=0.1)
    assert chroma(double, "gaintint") == pytest.approx(2 * chroma(shipped, "gaintint"), rel=0.1)
    assert chroma(gray, "gaintint") < 1.0
    assert chroma(double, "tint") == pytest.approx(chroma(shipped, "tint"), abs=1e-6)
    for bad in (-1, 7, "very"):
        with pytest.raises(InvalidCondition, match="colour strength"):
            compare_ui.compare(str(gray_photo), ["gaintint"], gain_catalog, bad)


def test_compare_refuses_bad_inputs_with_readable_messages(catalog, photo, tmp_path):
    with pytest.raises(InvalidCondition, match="at least one model"):
        compare_ui.compare(str(photo), [], catalog)
    with pytest.raises(InvalidCondition, match="needs reference"):
        compare_ui.compare(str(photo), ["refmean"], catalog)
    with pytest.raises(InvalidImage, match="upload a photo first"):
        compare_ui.compare(None, ["tint"], catalog)
    corrupt = tmp_path / "abc123" / "cache-name.jpg"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"\xff\xd8\xff this is not really a JPEG")
    upload = {"path": str(corrupt), "orig_name": "holiday.jpg"}
    with pytest.raises(InvalidImage, match="holiday.jpg") as info:
        compare_ui.compare(upload, ["tint"], catalog)
    assert "cache-name" not in str(info.value)  # the visitor's name, not Gradio's cache path
    big = tmp_path / "big.png"  # over this catalog's 1 MP: downscaled, not refused
    Image.new("RGB", (1200, 1000)).save(big)
    assert "downscaled" in compare_ui.describe_input(str(big), catalog)


def test_describe_and_colorize_one(catalog, photo):
    assert "96x64" in compare_ui.describe_input(str(photo), catalog)
    assert "ground truth" in compare_ui.describe_input(str(photo), catalog)
    png = compare_ui.colorize_one(str(photo), "", catalog)  # empty: the default model
    assert _png(png).shape == (64, 96, 3)


def test_user_errors_become_gradio_errors():
    import gradio as gr

    @user_errors
    def bad():
        raise InvalidImage("photo.jpg: not an image file")

    with pytest.raises(gr.Error, match="photo.jpg: not an image file"):
        bad()

    @user_errors
    def buggy():
        raise RuntimeError("secret internal detail")

    with pytest.raises(gr.Error, match="went wrong on the server") as info:
        buggy()
    assert "secret" not in str(info.value)  # the details go to the log, not to the visitor


def test_scratch_files_live_in_the_temp_dir():
    folder = work_dir()
    assert folder.is_relative_to(Path(tempfile.gettempdir()))
    assert not folder.is_relative_to(Path.cwd())


def test_examples_are_shipped_small():
    photos = example_photos()
    assert 3 <= len(photos) <= 6
    for path in photos:
        assert Path(path).stat().st_size < 200_000
        assert load_input(path, None).is_color


# --- guided ----------------------------------------------------------------------------------------
def test_color_parsing_and_conversion():
    assert guided_ui.parse_color("#f00") == (255, 0, 0)
    assert guided_ui.parse_color("#1E90FF") == (30, 144, 255)
    assert guided_ui.parse_color("rgba(30, 144, 255, 1)") == (30, 144, 255)
    a, b = guided_ui.color_to_ab("#ff0000")
    assert a == pytest.approx(80.1, abs=0.2) and b == pytest.approx(67.2, abs=0.2)
    with pytest.raises(InvalidCondition, match="not a colour"):
        guided_ui.parse_color("reddish")


def test_hint_list_add_move_recolor_remove():
    hints = guided_ui.add_hint([], 0.25, 0.5, "#ff0000", 5)
    hints = guided_ui.add_hint(hints, 0.75, 0.5, "#0000ff", 3)
    assert [h["color"] for h in hints] == ["#ff0000", "#0000ff"]
    moved = guided_ui.move_hint(hints, 1, 0.1, 0.9)
    assert (moved[0]["x"], moved[0]["y"]) == (0.1, 0.9) and moved[0]["a"] == hints[0]["a"]
    recoloured = guided_ui.recolor_hint(moved, 2, "#00ff00")
    assert recoloured[1]["a"] < -50  # green
    removed = guided_ui.remove_hint(recoloured, 1)
    assert len(removed) == 1 and removed[0]["color"] == "#00ff00"
    table = guided_ui.hints_table(removed)
    assert list(table.columns) == guided_ui.HINT_HEADERS and table.iloc[0]["#"] == 1
    with pytest.raises(InvalidCondition, match="no hint #3"):
        guided_ui.remove_hint(removed, 3)
    with pytest.raises(InvalidCondition, match="no hints yet"):
        guided_ui.move_hint([], 1, 0.5, 0.5)


def test_click_position_becomes_fractions_of_the_image():
    assert guided_ui.click_to_fraction([0, 0], (101, 51)) == (0.0, 0.0)
    assert guided_ui.click_to_fraction([100, 25], (101, 51)) == (1.0, 0.5)
    assert guided_ui.click_to_fraction([500, -3], (101, 51)) == (1.0, 0.0)  # clamped
    with pytest.raises(InvalidCondition):
        guided_ui.click_to_fraction(None, (10, 10))


def test_canvas_draws_each_hint_in_its_colour(photo):
    image = load_input(str(photo), None)
    hints = guided_ui.add_hint([], 0.25, 0.25, "#ff0000", 5)
    board = guided_ui.canvas(image, hints)
    assert board.shape[:2] == (64, 96)  # small photos are not enlarged
    cx, cy = round(0.25 * 95), round(0.25 * 63)
    assert tuple(board[cy, cx]) == (255, 0, 0)
    assert np.ptp(board[60, 90].astype(int)) <= 1  # elsewhere: gray


def test_guided_result_follows_the_hints(catalog, photo):
    red = guided_ui.add_hint([], 0.2, 0.2, "#ff0000")
    one = guided_ui.run_guided(str(photo), "hintmean", red, catalog)
    blue = guided_ui.add_hint(red, 0.8, 0.8, "#0000ff")
    two = guided_ui.run_guided(str(photo), "hintmean", blue, catalog)
    assert one.hints_used == 1 and two.hints_used == 2
    lab_one, lab_two = rgb2lab(_png(one.color_png)), rgb2lab(_png(two.color_png))
    assert lab_one[..., 1].mean() > 20  # red hint: a > 0 everywhere
    assert lab_two[..., 2].mean() < lab_one[..., 2].mean() - 20  # the blue hint pulled b down
    assert _png(two.color_png).shape == (64, 96, 3)


def test_guided_global_saturation_and_refusals(catalog, photo, tmp_path):
    plain = guided_ui.run_guided(str(photo), "hintmean", [], catalog)
    vivid = guided_ui.run_guided(str(photo), "hintmean", [], catalog, saturation=0.5)
    assert (
        rgb2lab(_png(vivid.color_png))[..., 1].mean()
        > rgb2lab(_png(plain.color_png))[..., 1].mean() + 10
    )
    with pytest.raises(InvalidCondition, match="does not take colour hints"):
        guided_ui.run_guided(str(photo), "tint", [], catalog)
    with pytest.raises(InvalidCondition, match="between 0 and 1"):
        guided_ui.run_guided(str(photo), "hintmean", [], catalog, saturation=3)
    bad = [{"x": 2.0, "y": 0.5, "a": 0, "b": 0, "size": 3, "color": "#000000"}]
    with pytest.raises(InvalidCondition, match="outside the image"):
        guided_ui.run_guided(str(photo), "hintmean", bad, catalog)
    with pytest.raises(InvalidCondition):
        guided_ui.run_guided(str(photo), None, [], catalog)


def test_suggested_colors_come_from_the_models_distribution(catalog, photo):
    left = guided_ui.suggest_colors(str(photo), "hintmean", 0.1, 0.5, catalog)
    right = guided_ui.suggest_colors(str(photo), "hintmean", 0.9, 0.5, catalog)
    r, g, b = guided_ui.parse_color(left[0].hex)
    assert left[0].probability == pytest.approx(1.0) and r > g and r > b  # red bin
    r, g, b = guided_ui.parse_color(right[0].hex)
    assert b > r and b > g  # blue bin
    # a model without a distribution borrows unet_bins'; in this catalog there is none
    assert guided_ui.suggest_colors(str(photo), "tint", 0.5, 0.5, catalog) == []
    choices = guided_ui.suggestion_choices(left)
    assert choices[0][1] == left[0].hex and choices[0][0].startswith(left[0].hex)


def test_a_model_without_a_distribution_gets_suggestions_from_unet_bins(photo):
    registry = ModelCatalog(AppSettings(device="cpu"))
    takers = registry.available("hints")
    if "unet_bins" not in registry.available() or not takers:
        pytest.skip("unet_bins' or a hint-taking model's weights are not installed")
    model = "siggraph17" if "siggraph17" in takers else takers[0]
    assert guided_ui.suggestion_model(registry, model) in (model, "unet_bins")
    suggested = guided_ui.suggest_colors(str(photo), model, 0.25, 0.25, registry)
    assert 5 <= len(suggested) <= 8
    assert len({s.hex for s in suggested}) == len(suggested)  # distinct
    assert all(0 < s.probability <= 1 for s in suggested)
    probabilities = [s.probability for s in suggested]
    assert probabilities == sorted(probabilities, reverse=True)


def test_clicking_a_hint_selects_it_and_elsewhere_adds_or_moves(catalog, photo):
    image = load_input(str(photo), None)
    width, height = guided_ui.preview_size(*image.size)
    hints, sel, x, y = guided_ui.apply_click(image, [], (10, 10), color="#ff0000")
    assert len(hints) == 1 and sel == 1
    hints, sel, _, _ = guided_ui.apply_click(image, hints, (70, 40), color="#00ff00")
    assert len(hints) == 2 and sel == 2
    dot = (hints[0]["x"] * (width - 1) + 2, hints[0]["y"] * (height - 1) - 1)
    same, sel, x, y = guided_ui.apply_click(image, hints, dot, selected=2)
    assert same == hints and sel == 1 and (x, y) == (hints[0]["x"], hints[0]["y"])
    moved, sel, _, _ = guided_ui.apply_click(
        image, hints, (50, 50), mode=guided_ui.MOVE, selected=1
    )
    assert sel == 1 and moved[0]["x"] != hints[0]["x"] and moved[1] == hints[1]


# --- reference and prompt --------------------------------------------------------------------------
def test_reference_tab_uses_the_reference_colours(catalog, photo, tmp_path):
    ref = tmp_path / "green.png"
    Image.new("RGB", (40, 30), (30, 180, 40)).save(ref)
    out = conditioned_ui.run_reference(str(photo), str(ref), "refmean", catalog)
    assert rgb2lab(_png(out.color_png))[..., 1].mean() < -20  # green: a < 0
    with pytest.raises(InvalidImage, match="reference photo"):
        conditioned_ui.run_reference(str(photo), None, "refmean", catalog)
    with pytest.raises(InvalidCondition, match="does not take reference"):
        conditioned_ui.run_reference(str(photo), str(ref), "tint", catalog)


def test_prompt_tab_says_what_a_visitor_can_do_when_disabled(catalog, photo):
    notice = conditioned_ui.prompt_notice(catalog)
    assert "not available on this server" in notice
    assert "Compare" in notice and "Guided" in notice and "Reference" in notice
    assert "DEEPCOLOR_" not in notice and "environment" not in notice  # not the visitor's job
    with pytest.raises(InvalidCondition, match="text-prompt"):
        conditioned_ui.run_prompt(str(photo), "a red barn", None, catalog)


# --- batch -----------------------------------------------------------------------------------------
def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_batch_zip_in_zip_out_with_failures_and_safe_names(catalog, photo, tmp_path):
    good = photo.read_bytes()
    archive = _zip(
        tmp_path / "photos.zip",
        {
            "summer/beach.png": good,
            "../../evil.png": good,
            "/abs/rooted.png": good,
            "other/beach.png": good,
            "notes.txt": b"hello",
            "broken.jpg": b"\xff\xd8 broken",
            "__MACOSX/._beach.png": b"junk",
        },
    )
    seen = []
    result = batch_ui.run_batch(
        [str(archive), str(photo)], "tint", catalog, progress=lambda f, d: seen.append(f)
    )
    assert len(result.done) == 5
    failures = dict(result.failures)
    assert "not an image type" in failures["photos.zip/notes.txt"]
    assert "not an image" in failures["photos.zip/broken.jpg"]
    assert "photos.zip/evil.png" in result.done  # ".." dropped from the name
    with zipfile.ZipFile(result.zip_path) as out:
        names = out.namelist()
        assert sorted(names) == [  # the zip's folders kept, made safe
            "abs/rooted.png",
            "evil.png",
            "other/beach.png",
            "quadrants.png",
            "summer/beach.png",
        ]
        assert all(not n.startswith("/") and ".." not in n for n in names)
        image = Image.open(io.BytesIO(out.read("summer/beach.png")))
        assert image.size == (96, 64)
    assert len(result.previews) == 5 and result.previews[0][1] == "photos.zip/summer/beach.png"
    assert all(max(Image.open(path).size) <= batch_ui.PREVIEW_SIDE for path, _ in result.previews)
    assert not (tmp_path.parent / "evil.png").exists()
    assert seen[0] == 0 and seen[-1] == 1.0
    assert list(result.failures_table().columns) == batch_ui.FAILURE_HEADERS


def test_batch_refuses_zip_bombs_and_empty_uploads(photo, tmp_path):
    small = ModelCatalog(
        AppSettings(batch_max_total_megabytes=1.0),
        models={"tint": TintColorizer()},
        include_registry=False,
    )
    bomb = _zip(tmp_path / "bomb.zip", {"zeros.png": b"\0" * (8 * 2**20)})
    assert bomb.stat().st_size < 100_000  # 8 MB of zeros squeezed into a few KB
    with pytest.raises(InvalidCondition, match="more than 1 MB"):
        batch_ui.run_batch([str(bomb)], "tint", small)
    with pytest.raises(InvalidCondition, match="upload photos"):
        batch_ui.run_batch([], "tint", small)
    few = ModelCatalog(
        AppSettings(batch_max_files=2), models={"tint": TintColorizer()}, include_registry=False
    )
    with pytest.raises(InvalidCondition, match="at most 2 photos"):
        batch_ui.run_batch([str(photo)] * 3, "tint", few)
    not_zip = tmp_path / "fake.zip"
    not_zip.write_bytes(b"PK nothing")
    result = batch_ui.run_batch([str(not_zip), str(photo)], "tint", small)
    assert result.failures[0][0] == "fake.zip" and "zip" in result.failures[0][1]


# --- the app's wiring ------------------------------------------------------------------------------
def test_every_action_has_an_api_name(catalog):
    import app

    demo = app.build_app(catalog)
    names = {fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"}
    expected = {"compare", "colorize", "describe", "guided", "guided_click", "guided_remove"}
    assert expected | {"reference", "prompt", "batch"} <= names
    assert "hintmean" in models_markdown(catalog)
    # every result has a name in the API, never Gradio's "value_14"
    info = demo.get_api_info()
    for endpoint, spec in info["named_endpoints"].items():
        for returned in spec["returns"]:
            assert not returned["label"].startswith("value_"), (endpoint, returned)


def test_suggestions_go_with_the_hint_they_were_asked_for(catalog, photo):
    import app

    fns = {fn.api_name: fn.fn for fn in app.build_app(catalog).fns.values() if fn.api_name}
    hints = guided_ui.add_hint(guided_ui.add_hint([], 0.2, 0.2, "#ff0000"), 0.8, 0.8, "#0000ff")
    for outputs in (fns["guided_remove"](str(photo), hints, 1), fns["guided_clear"](str(photo))):
        suggestions = outputs[-1]  # the Radio of suggested colours, after the hint state
        assert suggestions["visible"] is False and suggestions["choices"] == []
    left = fns["guided_remove"](str(photo), hints, 1)[0]
    assert [h["color"] for h in left] == ["#0000ff"]


def test_a_mistyped_default_model_setting_stops_the_app_with_one_line(monkeypatch):
    import app

    monkeypatch.setenv("DEEPCOLOR_DEFAULT_MODEL", "blnd")
    monkeypatch.setattr(app.gr.Blocks, "launch", lambda *a, **k: pytest.fail("the app started"))
    with pytest.raises(SystemExit) as stopped:
        app.main(["--port", "7999"])
    assert str(stopped.value).startswith("error: DEEPCOLOR_DEFAULT_MODEL=blnd: unknown model")


# --- diffusion weights (Prompt tab) ----------------------------------------------------------------
class _Sources:
    def __init__(self, *sources: str) -> None:
        self.sources = sources

    def resolved_sources(self) -> tuple[str, ...]:
        return self.sources


def test_diffusion_weights_are_looked_for_without_loading(tmp_path, monkeypatch):
    from deepcolor.ui.diffusion import missing_weights

    monkeypatch.delenv("DEEPCOLOR_SD_MODEL", raising=False)
    monkeypatch.delenv("DEEPCOLOR_CONTROLNET_MODEL", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    reason = missing_weights(_Sources("nobody/sd-not-here", "nobody/cn-not-here"))
    assert "DEEPCOLOR_SD_MODEL" in reason and "DEEPCOLOR_CONTROLNET_MODEL" in reason
    local = tmp_path / "sd"
    local.mkdir()
    reason = missing_weights(_Sources(str(local), "nobody/cn-not-here"))
    assert "DEEPCOLOR_SD_MODEL" not in reason and "'nobody/cn-not-here'" in reason
    monkeypatch.setenv("DEEPCOLOR_CONTROLNET_MODEL", "someone/cn")  # set explicitly: enabled
    assert missing_weights(_Sources(str(local), "someone/cn")) == ""
    assert missing_weights(object()) == ""  # not a diffusion model


def test_registered_prompt_models_say_what_to_set(monkeypatch):
    monkeypatch.delenv("DEEPCOLOR_SD_MODEL", raising=False)
    monkeypatch.delenv("DEEPCOLOR_CONTROLNET_MODEL", raising=False)
    catalog = ModelCatalog()
    prompt_models = [s for s in catalog.statuses() if "prompt" in s.needs]
    if not prompt_models:
        pytest.skip("no text-prompt model is registered in this version")
    notice = conditioned_ui.prompt_notice(catalog)
    if any(s.available for s in prompt_models):
        assert notice == ""  # the tab is enabled
    else:
        assert "not available on this server" in notice and "DEEPCOLOR_" not in notice
        # whoever runs the server finds what to set on the Models tab
        reasons = models_markdown(catalog)
        assert "DEEPCOLOR_SD_MODEL" in reasons and "DEEPCOLOR_CONTROLNET_MODEL" in reasons


def test_old_request_folders_are_pruned():
    import time as _time

    from deepcolor.ui.common import MAX_AGE_SECONDS, new_folder

    old = new_folder("old")
    stale = _time.time() - MAX_AGE_SECONDS - 10
    os.utime(old, (stale, stale))
    fresh = new_folder("fresh")
    assert fresh.is_dir() and not old.exists()


def test_actions_get_a_gpu_lease_only_on_zero_gpu(monkeypatch):
    import app

    leases = []

    class FakeSpaces:
        @staticmethod
        def GPU(duration=60):
            def decorate(fn):
                leases.append(duration)
                return fn

            return decorate

    monkeypatch.setattr(app, "spaces", FakeSpaces)
    monkeypatch.setattr(app, "ON_ZERO_GPU", True)
    assert app.handler(lambda: 1)() == 1
    app.handler(gpu_seconds=120)(lambda: 1)
    assert leases == [60, 120] and device_label(ModelCatalog(), on_zero_gpu=True) == "ZeroGPU"
    monkeypatch.setattr(app, "ON_ZERO_GPU", False)
    app.handler(lambda: 1)
    assert leases == [60, 120]


# --- what a visitor is told --------------------------------------------------------------------
def test_a_photo_too_small_to_colorize_is_refused_clearly(catalog, tmp_path):
    tiny = tmp_path / "pixel.png"
    Image.new("RGB", (1, 1), (120, 80, 40)).save(tiny)
    with pytest.raises(InvalidImage, match=r"pixel\.png: 1x1 pixels is too small to colourise"):
        compare_ui.compare(str(tiny), ["tint"], catalog)
    assert "too small" in compare_ui.describe_upload(str(tiny), catalog)
    zipped = _zip(tmp_path / "tiny.zip", {"pixel.png": tiny.read_bytes()})
    result = batch_ui.run_batch([str(zipped)], "tint", catalog)
    assert not result.done and "too small" in result.failures[0][1]


def test_a_photo_over_the_servers_limit_is_downscaled_and_said_so(photo, tmp_path):
    small = ModelCatalog(
        AppSettings(max_megapixels=0.0015), models={"tint": TintColorizer()}, include_registry=False
    )
    result = compare_ui.compare(str(photo), ["tint"], small)
    width, height = result.size
    assert width * height <= 1500 and abs(width / height - 1.5) < 0.1  # aspect ratio kept
    assert _png(result.outputs[0].png).shape == (height, width, 3)
    assert "96x64" in result.summary() and "downscaled" in result.summary()
    assert "downscaled" in compare_ui.describe_input(str(photo), small)
    batch = batch_ui.run_batch([str(photo)], "tint", small)
    assert batch.downscaled == 1 and "downscaled" in batch.summary()


def test_a_photo_over_what_the_app_opens_says_what_to_do(catalog, tmp_path):
    huge = tmp_path / "panorama.png"
    Image.new("L", (9000, 6000)).save(huge)  # 54 MP of black compresses to a small file
    with pytest.raises(ImageTooLarge) as info:
        compare_ui.describe_input(str(huge), catalog)
    message = str(info.value)
    assert "panorama.png" in message and "54.0 megapixels" in message
    assert "up to 50 MP" in message and "resize it" in message
    assert "raise the limit" not in message  # a visitor cannot


def test_a_damaged_upload_is_described_in_place(catalog, tmp_path):
    corrupt = tmp_path / "grandma.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 cut off")
    text = compare_ui.describe_upload(str(corrupt), catalog)
    assert text.startswith("**Cannot use this file:**") and "grandma.jpg" in text
    assert compare_ui.describe_upload(None, catalog) == ""


def test_a_black_and_white_reference_is_warned_about(catalog, photo, gray_photo):
    assert conditioned_ui.describe_reference(str(photo), catalog) == ""
    warning = conditioned_ui.describe_reference(str(gray_photo), catalog)
    assert "black-and-white" in warning and "colour photo" in warning
    out = conditioned_ui.run_reference(str(photo), str(gray_photo), "refmean", catalog)
    assert "black-and-white" in out.status()
    fine = conditioned_ui.run_reference(str(photo), str(photo), "refmean", catalog)
    assert fine.status() == f"refmean: {fine.seconds:.2f} s"


def test_a_damaged_reference_is_described_in_place(catalog, tmp_path):
    damaged = tmp_path / "holiday.jpg"
    damaged.write_bytes(b"\xff\xd8\xff\xe0 cut off")
    said = conditioned_ui.describe_reference(str(damaged), catalog)
    assert said.startswith("**Cannot use this reference:**") and "holiday.jpg" in said


def test_each_model_is_explained_in_one_line(catalog):
    lines = model_lines(catalog, ["tint", "hintmean"]).splitlines()
    assert lines == [
        f"- `tint`: {catalog.status('tint').summary}",
        f"- `hintmean`: {catalog.status('hintmean').summary}",
    ]
