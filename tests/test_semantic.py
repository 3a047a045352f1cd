"""The semantic test's bookkeeping: preprocessing, top-1/top-5, originals vs a colouriser."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from deepcolor.pipeline import ColorizationPipeline
from deepcolor.semantic import centre_crop, classifier_input, read_labels, semantic_accuracy


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # On a busy 2-core machine two OpenMP threads per process spin against each other (a training
    # step of these tiny models measured 3 s with 2 threads, 0.1 s with 1); restore afterwards.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class ColourClassifier(nn.Module):
    """Class = channel ranking of the mean colour (0: red, 1: green, 2: blue), 5 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))  # gives the module a device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        means = x.mean(dim=(2, 3))  # (B, 3)
        means = means - means.mean(1, keepdim=True)  # only the colour counts, not brightness
        spread = means.max(1).values - means.min(1).values
        # gray photos (no spread) are class 3; class 4 is never the answer
        logits = torch.cat((means, 0.02 - spread[:, None], torch.full_like(spread[:, None], -9)), 1)
        return logits


def _make_folder(tmp_path: Path) -> Path:
    colours = [(200, 40, 40), (30, 180, 50), (40, 60, 210), (220, 30, 60)]
    labels = [0, 1, 2, 1]  # the last one is labelled wrongly on purpose
    rows = ["file,wnid,class_index,class_name"]
    for i, (colour, label) in enumerate(zip(colours, labels, strict=True)):
        rgb = np.zeros((256, 300, 3), np.uint8) + np.array(colour, np.uint8)
        rgb[:, :20] = 255  # outside the centre crop: must not count
        Image.fromarray(rgb).save(tmp_path / f"im{i}.png")
        rows.append(f"im{i}.png,n{i},{label},thing {i}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_centre_crop_uses_pillows_offsets():
    rgb = np.random.default_rng(0).integers(0, 255, (256, 341, 3), dtype=np.uint8)
    left, top = round((341 - 224) / 2), round((256 - 224) / 2)
    ours = centre_crop(rgb)
    theirs = np.asarray(Image.fromarray(rgb).crop((left, top, left + 224, top + 224)))
    assert np.array_equal(ours, theirs)


def test_classifier_input_normalisation():
    crop = np.full((224, 224, 3), 255, np.uint8)
    crop[..., 1] = 127
    x = classifier_input([crop])
    assert x.shape == (1, 3, 224, 224)
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([1.0, 0.0, 1.0]))


def test_accuracy_on_originals_and_on_gray(tmp_path):
    folder = _make_folder(tmp_path)
    assert [label for _, label in read_labels(folder)] == [0, 1, 2, 1]
    originals = semantic_accuracy(None, folder, classifier=ColourClassifier(), batch_size=3)
    assert originals.count == 4
    assert originals.top1 == pytest.approx(3 / 4)
    assert originals.predictions == (0, 1, 2, 0)
    # top-5 of 5 classes always contains the label
    assert originals.top5 == pytest.approx(1.0)
    gray = semantic_accuracy(
        ColorizationPipeline("gray"), folder, classifier=ColourClassifier(), limit=3
    )
    assert gray.count == 3
    assert gray.predictions == (3, 3, 3)  # colour removed: the classifier sees gray
    assert gray.top1 == 0.0


def test_real_classifier_recognises_a_few_sample_photos(shared_data):
    result = semantic_accuracy(None, shared_data / "eval/imagenet-sample", limit=8)
    # the converted EfficientNet-Lite0 gets 86.76 % of the 974 originals right
    assert result.top1 >= 5 / 8
    assert result.top5 >= result.top1


def test_semantic_loss_is_zero_for_the_truth_and_steers_wrong_colours(shared_data):
    """The training signal of deepcolor.semantic: the frozen classifier's KL, truth vs guess."""
    from deepcolor.color import rgb_to_lab
    from deepcolor.semantic import semantic_loss

    folder = shared_data / "eval" / "imagenet-sample"
    path, _ = read_labels(folder)[0]
    rgb = np.asarray(Image.open(path).convert("RGB").resize((64, 64)), np.float32) / 255.0
    lab = rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1)[None])
    L, ab = lab[:, :1], lab[:, 1:]
    assert float(semantic_loss(L, ab, ab, size=64)) == pytest.approx(0.0, abs=1e-4)
    wrong = (-ab).requires_grad_(True)  # complementary colours
    loss = semantic_loss(L, wrong, ab, size=64)
    assert float(loss.detach()) > 0.01
    loss.backward()
    assert wrong.grad is not None and float(wrong.grad.abs().sum()) > 0
