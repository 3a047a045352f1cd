import io

import numpy as np
import pytest
from PIL import Image

from deepcolor.errors import DeepColorError, ImageTooLarge, InvalidImage
from deepcolor.images import load_image, save_image, to_pil, to_uint8


def _bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture
def photo() -> Image.Image:
    rng = np.random.default_rng(0)
    arr = (rng.random((20, 30, 3)) * 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF"])
def test_formats(photo, fmt):
    img = load_image(_bytes(photo, fmt))
    assert img.rgb.shape == (20, 30, 3)
    assert img.rgb.dtype == np.float64 and 0 <= img.rgb.min() and img.rgb.max() <= 1


def test_lossless_formats_keep_pixels(photo, tmp_path):
    path = tmp_path / "p.png"
    photo.save(path)
    img = load_image(path)
    assert np.array_equal(to_uint8(img.rgb), np.asarray(photo))
    assert img.source == "p.png" and img.bit_depth == 8


def test_gif_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    img = load_image(buf.getvalue())
    assert img.rgb[0, 0, 0] > 0.9 and img.rgb[0, 0, 2] < 0.1


def test_exif_orientation_applied(photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    img = load_image(_bytes(photo, "JPEG", exif=exif))
    assert img.rgb.shape == (30, 20, 3)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F", "1"])
def test_modes(photo, mode):
    if mode == "I;16":
        im = Image.fromarray((np.arange(600).reshape(20, 30) * 100).astype(np.uint16))
    elif mode == "I":
        im = photo.convert("L").convert("I")
    elif mode == "F":
        im = Image.fromarray(np.linspace(0, 1, 600, dtype=np.float32).reshape(20, 30), "F")
    else:
        im = photo.convert(mode)
    img = load_image(im)
    assert img.rgb.shape == (20, 30, 3)
    assert np.isfinite(img.rgb).all() and img.rgb.min() >= 0 and img.rgb.max() <= 1
    assert (img.alpha is not None) == (mode in ("LA", "RGBA"))


def test_sixteen_bit_keeps_precision(tmp_path):
    arr = (np.arange(64 * 64).reshape(64, 64) * 7 % 65536).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    img = load_image(path)
    assert img.bit_depth == 16
    assert np.allclose(img.rgb[..., 0], arr / 65535.0)
    assert len(np.unique(img.rgb[..., 0])) > 256  # more levels than 8 bits could hold


def test_palette_with_transparency(tmp_path):
    im = Image.new("P", (4, 4), 0)
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    im.info["transparency"] = 0
    img = load_image(_bytes(im, "PNG"))
    assert img.alpha is not None and img.alpha.max() == 0


def test_alpha_flattened_on_request():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    img = load_image(rgba, keep_alpha=False)
    assert img.alpha is None and np.allclose(img.rgb, 1.0)  # transparent -> white


def test_sepia_is_not_colour_but_a_photo_is(photo):
    gray = np.asarray(photo.convert("L"), dtype=np.float64) / 255
    sepia = np.stack([gray * 1.0, gray * 0.85, gray * 0.65], axis=-1)
    assert not load_image(sepia).is_color
    assert load_image(photo).is_color


@pytest.mark.parametrize(
    "data,match",
    [
        (b"", "empty"),
        (b"this is not an image at all", "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "damaged|not an image"),
    ],
)
def test_bad_bytes(data, match):
    with pytest.raises(InvalidImage, match=match):
        load_image(data)


def test_truncated_file(photo, tmp_path):
    data = _bytes(photo.resize((300, 300)), "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidImage, match="cut.jpg"):
        load_image(path)


def test_missing_empty_and_folder(tmp_path):
    with pytest.raises(InvalidImage, match="no such file"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InvalidImage, match="empty"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(InvalidImage, match="folder"):
        load_image(tmp_path)


def test_wrong_type():
    with pytest.raises(InvalidImage, match="cannot read an image from a int"):
        load_image(42)
    with pytest.raises(InvalidImage, match="shape"):
        load_image(np.zeros((4, 4, 7)))
    with pytest.raises(InvalidImage, match="zero size"):
        load_image(np.zeros((0, 4, 3), dtype=np.uint8))
    with pytest.raises(InvalidImage, match="NaN"):
        load_image(np.full((2, 2, 3), np.nan))


def test_pixel_limit_replaces_decompression_bomb(tmp_path):
    path = tmp_path / "big.png"
    Image.new("L", (5000, 4000)).save(path)  # 20 MP, compresses to almost nothing
    with pytest.raises(ImageTooLarge, match="20.0 megapixels"):
        load_image(path, max_pixels=10_000_000)
    assert load_image(path, max_pixels=None).rgb.shape == (4000, 5000, 3)
    assert issubclass(ImageTooLarge, DeepColorError)


def test_save_is_atomic_and_never_overwrites(tmp_path, photo):
    path = tmp_path / "out" / "a.png"
    save_image(photo, path)
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(photo))
    with pytest.raises(FileExistsError):
        save_image(photo, path)
    assert [p.name for p in path.parent.iterdir()] == ["a.png"]  # no temporary leftovers


def test_to_pil_restores_alpha():
    rgb = np.zeros((2, 2, 3))
    alpha = np.array([[0.0, 1.0], [0.5, 1.0]])
    im = to_pil(rgb, alpha)
    assert im.mode == "RGBA" and np.asarray(im)[0, 1, 3] == 255
