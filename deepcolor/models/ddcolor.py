"""``ddcolor``: DDColor (Kang et al., "DDColor: Towards Photo-Realistic Image Colorization via
Dual Decoders", ICCV 2023; original code Apache-2.0).

A ConvNeXt encoder sees the gray photo as an RGB image of (L, 0, 0). Two decoders share its
features:

* a *pixel decoder*: three U-Net blocks (pixel shuffle up-sampling with spectral-normalised
  convolutions, skip connections from the ConvNeXt stages) and a final 4x pixel shuffle back
  to the input's resolution;
* a *colour decoder*: 100 learnable colour queries refined by 9 transformer layers, each
  cross-attending to one scale of the pixel decoder (1/16, 1/8, 1/4 in turn, with sine position
  embeddings and a learnt level embedding), then self-attending, then a feed-forward layer.

Each query, dotted with the full-resolution pixel features, gives one map; the 100 maps and the
normalised input go through a spectral-normalised 1x1 convolution to ab in CIELAB units. The
published models work at 512x512; the pipeline resizes L there and the result back.

The module tree is the original's, so the published checkpoints (Hub folders written by
``PyTorchModelHubMixin`` or a single ``pytorch_model.pt``) load with ``strict=True`` and no
renaming; :meth:`DDColorColorizer.from_pretrained` refuses any other layout by naming the keys.
"""

from __future__ import annotations

import json
import math
from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..color import gray_rgb_from_l, join_lab, lab_to_rgb
from ..errors import InvalidCondition, ModelUnavailable
from ..registry import register_colorizer
from ._layers import owned_copy
from .base import Colorizer

#: (blocks per stage, channels per stage) of the two published encoders
ENCODERS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "convnext-t": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "convnext-l": ((3, 3, 27, 3), (192, 384, 768, 1536)),
}
#: the encoder's total stride; the network's input must be a multiple of it
SIZE_MULTIPLE = 32
#: training loss weights of the paper's configuration (L1 on ab, colourfulness)
L1_WEIGHT = 0.1
COLORFULNESS_WEIGHT = 0.5
#: the ImageNet statistics the encoder's input is normalised with (buffers ``mean``, ``std``)
INPUT_STATISTICS = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
#: a switch of the original's training code (start the encoder from ImageNet weights) that a
#: config.json may carry; the checkpoint's own weights supersede it
TRAINING_ONLY_SETTINGS = ("encoder_from_pretrain",)
#: weight files a folder may hold, in the order they are looked for
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "pytorch_model.pt")


# --- the ConvNeXt encoder ---------------------------------------------------------------------


class LayerNorm2d(nn.LayerNorm):
    """Layer norm over the channels of a ``(B, C, H, W)`` map (ConvNeXt's channels-first norm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ConvNeXtBlock(nn.Module):
    """Depth-wise 7x7 conv, layer norm, 4x MLP with GELU, layer scale, residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    """ConvNeXt feature extractor: the four stage outputs, each through its own layer norm.

    ``norm`` (the classifier's final norm) is kept only so that the published checkpoints load;
    the colouriser never uses it.
    """

    def __init__(self, depths: tuple[int, ...], dims: tuple[int, ...], in_channels: int = 3):
        super().__init__()
        stem = nn.Sequential(
            nn.Conv2d(in_channels, dims[0], 4, stride=4), LayerNorm2d(dims[0], 1e-6)
        )
        downsamples = [
            nn.Sequential(LayerNorm2d(dims[i], 1e-6), nn.Conv2d(dims[i], dims[i + 1], 2, stride=2))
            for i in range(len(dims) - 1)
        ]
        self.downsample_layers = nn.ModuleList([stem, *downsamples])
        self.stages = nn.ModuleList(
            nn.Sequential(*(ConvNeXtBlock(dim) for _ in range(depth)))
            for depth, dim in zip(depths, dims, strict=True)
        )
        for i, dim in enumerate(dims):
            self.add_module(f"norm{i}", LayerNorm2d(dim, 1e-6))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i, (down, stage) in enumerate(zip(self.downsample_layers, self.stages, strict=True)):
            x = stage(down(x))
            features.append(getattr(self, f"norm{i}")(x))
        return features


class ImageEncoder(nn.Module):
    """Holds the ConvNeXt under the name the checkpoints use (``encoder.arch``)."""

    def __init__(self, depths: tuple[int, ...], dims: tuple[int, ...]) -> None:
        super().__init__()
        self.arch = ConvNeXt(depths, dims)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.arch(x)


# --- the pixel decoder ------------------------------------------------------------------------


def spectral_conv(cin: int, cout: int, kernel: int, *, bias: bool) -> nn.Module:
    """A same-padded convolution with spectral normalisation (kaiming-initialised)."""
    conv = nn.Conv2d(cin, cout, kernel, padding=(kernel - 1) // 2, bias=bias)
    nn.init.kaiming_normal_(conv.weight)
    if bias:
        nn.init.zeros_(conv.bias)
    return nn.utils.spectral_norm(conv)


def icnr_(weight: torch.Tensor, scale: int) -> None:
    """ICNR initialisation: every sub-pixel of a shuffle starts with the same kernel, so the
    up-sampled map starts free of checkerboard artefacts (Aitken et al. 2017)."""
    out_channels, *rest = weight.shape
    base = torch.empty(out_channels // scale**2, *rest)
    nn.init.kaiming_normal_(base)
    with torch.no_grad():
        weight.copy_(base.repeat_interleave(scale**2, dim=0))


@torch.no_grad()
def settle_spectral_norms(model: nn.Module, iterations: int = 30) -> None:
    """Run the power iteration of every spectral-normalised convolution to convergence.

    ``spectral_norm`` starts from random singular vectors and refines them one step per
    training forward; a fresh model used for inference right away would divide its weights by
    a random, far too small sigma. Loaded checkpoints bring their own vectors.
    """
    for module in model.modules():
        if not hasattr(module, "weight_orig") or module.weight_orig.is_meta:
            continue  # nothing to compute for a model built only to receive a checkpoint
        matrix = module.weight_orig.flatten(1)
        v = module.weight_v
        for _ in range(iterations):
            u = F.normalize(matrix @ v, dim=0)
            v = F.normalize(matrix.T @ u, dim=0)
        module.weight_u.copy_(u)
        module.weight_v.copy_(v)


class PixelShuffleUp(nn.Module):
    """1x1 conv to ``cout * scale**2`` channels, ReLU, pixel shuffle, then a 2x2 blur (a
    replication pad and an average pool) that removes the remaining checkerboard."""

    def __init__(self, cin: int, cout: int, scale: int = 2, *, batch_norm: bool) -> None:
        super().__init__()
        conv = spectral_conv(cin, cout * scale**2, 1, bias=not batch_norm)
        icnr_(conv.weight_orig, scale)
        layers = [conv, nn.BatchNorm2d(cout * scale**2)] if batch_norm else [conv]
        self.conv = nn.Sequential(*layers)
        self.shuffle = nn.PixelShuffle(scale)
        self.pad = nn.ReplicationPad2d((1, 0, 1, 0))
        self.blur = nn.AvgPool2d(2, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blur(self.pad(self.shuffle(F.relu(self.conv(x)))))


class UNetBlock(nn.Module):
    """Up-sample x2, join the batch-normalised skip features, 3x3 conv, ReLU, batch norm."""

    def __init__(self, up_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.shuf = PixelShuffleUp(up_channels, out_channels, batch_norm=True)
        self.bn = nn.BatchNorm2d(skip_channels)
        with torch.no_grad():
            self.bn.bias.fill_(1e-3)
        self.conv = nn.Sequential(
            spectral_conv(out_channels + skip_channels, out_channels, 3, bias=False),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(F.relu(torch.cat([self.shuf(x), self.bn(skip)], dim=1)))


# --- the colour decoder -----------------------------------------------------------------------


def sine_position_embedding(
    height: int, width: int, channels: int, device: torch.device
) -> torch.Tensor:
    """DETR's normalised sine embedding, ``(height * width, channels)`` in float32.

    The first half of the channels encode the row, the second half the column, each as
    interleaved sin/cos of the position (scaled to [0, 2 pi]) over a geometric range of
    frequencies. It is computed in float32 whatever the model's dtype, as the original does,
    so that a float64 run reproduces the original's float64 output exactly.
    """
    feats, scale = channels // 2, 2 * math.pi
    rows = torch.arange(1, height + 1, dtype=torch.float32, device=device)
    cols = torch.arange(1, width + 1, dtype=torch.float32, device=device)
    rows = rows / (rows[-1:] + 1e-6) * scale
    cols = cols / (cols[-1:] + 1e-6) * scale
    freq = torch.arange(feats, dtype=torch.float32, device=device)
    freq = 10000 ** (2 * (freq // 2) / feats)

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos[:, None] / freq
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = encode(rows)[:, None, :].expand(height, width, feats)
    pos_x = encode(cols)[None, :, :].expand(height, width, feats)
    return torch.cat((pos_y, pos_x), dim=2).reshape(height * width, channels)


class CrossAttentionLayer(nn.Module):
    """Queries attend to a feature map (positions added to queries and keys); post-norm."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(
        self,
        queries: torch.Tensor,
        memory: torch.Tensor,
        pos: torch.Tensor,
        query_pos: torch.Tensor,
    ) -> torch.Tensor:
        attended = self.multihead_attn(
            queries + query_pos, memory + pos, memory, need_weights=False
        )[0]
        return self.norm(queries + attended)


class SelfAttentionLayer(nn.Module):
    """Queries attend to each other (positions added to queries and keys); post-norm."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, queries: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        q = queries + query_pos
        attended = self.self_attn(q, q, queries, need_weights=False)[0]
        return self.norm(queries + attended)


class FeedForwardLayer(nn.Module):
    """Two-layer ReLU MLP with a residual; post-norm."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.linear2(F.relu(self.linear1(x))))


class MLP(nn.Module):
    """Linear layers with ReLU between them (none after the last)."""

    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MultiScaleColorDecoder(nn.Module):
    """Colour queries refined against the pixel decoder's scales, in turn, layer by layer."""

    def __init__(
        self,
        in_channels: list[int],
        embed_channels: int,
        *,
        hidden_dim: int,
        num_queries: int,
        num_layers: int,
        heads: int,
        ffn_dim: int,
    ) -> None:
        super().__init__()
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(len(in_channels), hidden_dim)
        self.input_proj = nn.ModuleList(nn.Conv2d(c, hidden_dim, 1) for c in in_channels)
        for proj in self.input_proj:
            nn.init.kaiming_uniform_(proj.weight, a=1)
            nn.init.zeros_(proj.bias)
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, heads) for _ in range(num_layers)
        )
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, heads) for _ in range(num_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(
            FeedForwardLayer(hidden_dim, ffn_dim) for _ in range(num_layers)
        )
        for layers in (
            self.transformer_self_attention_layers,
            self.transformer_cross_attention_layers,
            self.transformer_ffn_layers,
        ):
            for p in layers.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.color_embed = MLP([hidden_dim, hidden_dim, hidden_dim, embed_channels])

    def forward(self, scales: list[torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        """``scales``: the pixel decoder's maps, coarse to fine; ``pixels``: its full-resolution
        embedding ``(B, C, H, W)``. Returns one map per query, ``(B, Q, H, W)``."""
        memories, positions = [], []
        for level, feature in enumerate(scales):
            src = (
                self.input_proj[level](feature).flatten(2) + self.level_embed.weight[level, :, None]
            )
            memories.append(src.transpose(1, 2))
            pos = sine_position_embedding(*feature.shape[-2:], src.shape[1], feature.device)
            positions.append(pos.to(src.dtype)[None])
        batch = pixels.shape[0]
        query_pos = self.query_embed.weight[None].expand(batch, -1, -1)
        queries = self.query_feat.weight[None].expand(batch, -1, -1)
        layers = zip(
            self.transformer_cross_attention_layers,
            self.transformer_self_attention_layers,
            self.transformer_ffn_layers,
            strict=True,
        )
        for i, (cross, self_attn, ffn) in enumerate(layers):
            level = i % len(scales)
            queries = cross(queries, memories[level], positions[level], query_pos)
            queries = ffn(self_attn(queries, query_pos))
        color = self.color_embed(self.decoder_norm(queries))
        return torch.einsum("bqc,bchw->bqhw", color, pixels)


class DualDecoder(nn.Module):
    """The pixel decoder (``layers``, ``last_shuf``) feeding the colour decoder."""

    def __init__(self, encoder_dims: tuple[int, ...], nf: int, **color_kwargs: Any) -> None:
        super().__init__()
        skip_dims = encoder_dims[-2::-1]
        outs = [nf] * (len(skip_dims) - 1) + [nf // 2]
        ins = [encoder_dims[-1], *outs[:-1]]
        self.layers = nn.ModuleList(
            UNetBlock(cin, skip, cout) for cin, skip, cout in zip(ins, skip_dims, outs, strict=True)
        )
        self.last_shuf = PixelShuffleUp(nf // 2, nf // 2, scale=4, batch_norm=False)
        self.color_decoder = MultiScaleColorDecoder(outs, nf // 2, **color_kwargs)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x, scales = features[-1], []
        for block, skip in zip(self.layers, features[-2::-1], strict=True):
            x = block(x, skip)
            scales.append(x)
        return self.color_decoder(scales, self.last_shuf(x))


# --- the colouriser ---------------------------------------------------------------------------


def colorfulness(rgb: torch.Tensor) -> torch.Tensor:
    """Hasler & Suesstrunk's colourfulness of each image, ``(B,)``, as DDColor's loss measures
    it: on ``|R - G|`` and ``|(R + G) / 2 - B|`` of RGB in [0, 1]."""
    r, g, b = rgb.float().unbind(1)
    rg = (r - g).abs().flatten(1)
    yb = (0.5 * (r + g) - b).abs().flatten(1)
    spread = torch.sqrt(rg.var(1) + yb.var(1))
    centre = torch.sqrt(rg.mean(1) ** 2 + yb.mean(1) ** 2)
    return spread + 0.3 * centre


def _pair(size: int | list[int] | tuple[int, ...]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise InvalidCondition(f"input_size must be one side or (height, width), got {size!r}")
    return size  # type: ignore[return-value]


def _check_published_options(options: dict[str, Any]) -> None:
    """The original's switches that the published checkpoints leave at one value; a config
    asking for another describes a network this port does not build."""
    expected = {
        "decoder_name": "MultiScaleColorDecoder",
        "num_input_channels": 3,
        "num_output_channels": 2,
        "last_norm": "Spectral",
        "do_normalize": False,
    }
    wrong = [f"{k}={options[k]!r} (expected {v!r})" for k, v in expected.items() if options[k] != v]
    if wrong:
        raise InvalidCondition(
            f"ddcolor supports only the published configuration: {'; '.join(wrong)}"
        )


def register_published_ddcolor(name: str, summary: str, hub_id: str):
    """Registers a DDColor whose weights the authors publish on the Hub as ``hub_id``."""
    return register_colorizer(
        name,
        summary=summary,
        weights="published by the authors on the Hugging Face Hub (Apache-2.0)",
        default_weights=hub_id,
    )


@register_published_ddcolor(
    "ddcolor",
    "DDColor-L (Kang et al., ICCV 2023): ConvNeXt-L with pixel and query-based colour decoders; "
    "the authors' weights for photos outside ImageNet",
    "piddnad/ddcolor_modelscope",
)
class DDColorColorizer(Colorizer):
    """DDColor with the original's module tree (its checkpoints load unchanged).

    The constructor takes the original's keyword arguments (what the published ``config.json``
    files hold) plus sizes for small test and training variants: ``encoder_depths``,
    ``encoder_dims``, ``hidden_dim``, ``nheads``, ``dim_feedforward``.
    """

    name = "ddcolor"
    size_multiple = SIZE_MULTIPLE
    #: the original's photo path (RGB resized before L, nearest ab, OpenCV CIELAB) is reproduced
    authors_processing = "ddcolor"
    exportable = True
    #: int8 vs float32 CIEDE2000 mean 0.015 / 0.048, max 1.85 / 1.79 (tiny / large; docs/ddcolor.md)
    int8_keeps_colours = True
    #: encoder when neither the caller nor a config.json names one
    default_encoder: ClassVar[str] = "convnext-l"

    def __init__(
        self,
        encoder_name: str | None = None,
        decoder_name: str = "MultiScaleColorDecoder",
        num_input_channels: int = 3,
        input_size: int | list[int] = 512,
        nf: int = 512,
        num_output_channels: int = 2,
        last_norm: str = "Spectral",
        do_normalize: bool = False,
        num_queries: int = 100,
        num_scales: int = 3,
        dec_layers: int = 9,
        encoder_depths: list[int] | None = None,
        encoder_dims: list[int] | None = None,
        hidden_dim: int = 256,
        nheads: int = 8,
        dim_feedforward: int = 2048,
    ) -> None:
        height, width = _pair(input_size)
        if height != width or height % SIZE_MULTIPLE:
            raise InvalidCondition(
                f"input_size must be square and a multiple of {SIZE_MULTIPLE}, got {input_size!r}"
            )
        super().__init__(working_size=height)
        encoder_name = encoder_name or self.default_encoder
        if encoder_name not in ENCODERS:
            raise InvalidCondition(
                f"unknown encoder_name {encoder_name!r}; choose from {', '.join(ENCODERS)}"
            )
        _check_published_options(
            {
                "decoder_name": decoder_name,
                "num_input_channels": num_input_channels,
                "num_output_channels": num_output_channels,
                "last_norm": last_norm,
                "do_normalize": do_normalize,
            }
        )
        depths, dims = ENCODERS[encoder_name]
        depths = tuple(encoder_depths or depths)
        dims = tuple(encoder_dims or dims)
        if len(depths) != 4 or len(dims) != 4:
            raise InvalidCondition("encoder_depths and encoder_dims need four stages each")
        if num_scales != len(dims) - 1:
            raise InvalidCondition(f"num_scales must be {len(dims) - 1} (one per U-Net block)")
        self.encoder_name = encoder_name
        if isinstance(self._hub_mixin_config, dict):  # a saved folder names its encoder
            self._hub_mixin_config["encoder_name"] = encoder_name
        self.encoder = ImageEncoder(depths, dims)
        self.decoder = DualDecoder(
            dims,
            nf,
            hidden_dim=hidden_dim,
            num_queries=num_queries,
            num_layers=dec_layers,
            heads=nheads,
            ffn_dim=dim_feedforward,
        )
        self.refine_net = nn.Sequential(
            nn.Sequential(spectral_conv(num_queries + 3, 2, 1, bias=True))
        )
        # ImageNet statistics of the encoder's input (the checkpoints carry their own copy)
        for key, values in INPUT_STATISTICS.items():
            self.register_buffer(key, torch.tensor(values).view(1, 3, 1, 1))
        settle_spectral_norms(self)

    # --- the network ------------------------------------------------------------------------
    def colorize_rgb(self, rgb: torch.Tensor) -> torch.Tensor:
        """The original network: gray RGB in [0, 1] ``(B, 3, H, W)`` (H, W multiples of 32)
        -> ab in CIELAB units at the same size."""
        x = (rgb - self.mean) / self.std
        query_maps = self.decoder(self.encoder(x))
        return self.refine_net(torch.cat([query_maps, x], dim=1))

    def forward(self, L: torch.Tensor, **conditions: Any) -> torch.Tensor:
        if L.dim() != 4 or L.shape[1] != 1:
            raise InvalidCondition(f"L must be (B, 1, H, W), got shape {tuple(L.shape)}")
        height, width = L.shape[-2:]
        pad_h, pad_w = (-height) % SIZE_MULTIPLE, (-width) % SIZE_MULTIPLE
        if pad_h or pad_w:
            L = F.pad(L, (0, pad_w, 0, pad_h), mode="replicate")
        ab = self.colorize_rgb(gray_rgb_from_l(L).to(self.mean.dtype))
        return ab[..., :height, :width]

    # --- training ---------------------------------------------------------------------------
    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The paper's pixel and colourfulness terms: ``0.1 * L1(ab)`` plus
        ``0.5 * (1 - colourfulness)`` of the predicted RGB, averaged over the images (the
        original sums over the batch; the mean keeps the balance independent of its size).
        The perceptual and adversarial terms of the paper are left to a fuller trainer."""
        L, ab = batch["L"], batch["ab"]
        pred = self(L)
        l1 = F.l1_loss(pred.float(), ab.float())
        rgb = lab_to_rgb(join_lab(L.float(), pred.float())).clamp(0, 1)
        return L1_WEIGHT * l1 + COLORFULNESS_WEIGHT * (1 - colorfulness(rgb)).mean()

    # --- loading ----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, source: str | Path, **kwargs: Any) -> DDColorColorizer:
        """A Hub id, a folder written by ``PyTorchModelHubMixin`` (``config.json`` with the
        constructor's arguments, ``model.safetensors`` or ``pytorch_model.bin``), a folder with
        a ``pytorch_model.pt``, or that file itself (a state dict or ``{"params": ...}``).
        ``kwargs`` override the config. The weights must match the layout key for key."""
        path = Path(source).expanduser()
        if not path.exists():
            from ..weights import resolve_weights

            path = resolve_weights(str(source), model_name=cls.name)
        if path.is_dir():
            config = _read_config(path)
            weights_file = next((path / f for f in WEIGHT_FILES if (path / f).is_file()), None)
            if weights_file is None:
                raise ModelUnavailable(
                    f"weights for {cls.name!r}: {path} holds none of {', '.join(WEIGHT_FILES)}"
                )
        else:
            config, weights_file = {}, path
        from ..weights import read_state_dict

        what = f"weights for {cls.name!r}: "
        state = read_state_dict(Path(weights_file), wrapper="params", what=what)
        return cls.from_state_dict(
            state, what=f"weights for {cls.name!r} in {weights_file}", **{**config, **kwargs}
        )

    @classmethod
    def from_state_dict(
        cls,
        state: dict[str, torch.Tensor],
        *,
        dtype: torch.dtype = torch.float32,
        what: str = "the state dict",
        **kwargs: Any,
    ) -> DDColorColorizer:
        """The model of ``kwargs`` holding ``state`` (checked key for key, floats cast to
        ``dtype``). It is built without initialising its weights: drawing 228 M random numbers
        only to overwrite them would take longer than reading the checkpoint. The input
        statistics ``mean`` and ``std`` are constants, supplied where a file lacks them."""
        with torch.device("meta"):
            model = cls(**kwargs)
        constants = {k: torch.tensor(v).view(1, 3, 1, 1) for k, v in INPUT_STATISTICS.items()}
        state = {**constants, **state}
        check_layout(model, state, what)
        # copies in memory of their own: the model must not hold views into the file (owned_copy)
        state = {
            k: owned_copy(v, dtype if v.is_floating_point() else None) for k, v in state.items()
        }
        model.load_state_dict(state, strict=True, assign=True)
        return model


def _read_config(folder: Path) -> dict[str, Any]:
    file = folder / "config.json"
    if not file.is_file():
        return {}
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelUnavailable(f"{file} is not a readable JSON file ({exc})") from None
    # the original's Hub wrapper took one ``config`` argument; older mixins may have nested it
    if isinstance(config, dict) and isinstance(config.get("config"), dict):
        config = config["config"]
    if not isinstance(config, dict):
        raise ModelUnavailable(f"{file} must hold a JSON object of constructor arguments")
    config = {k: v for k, v in config.items() if k not in TRAINING_ONLY_SETTINGS}
    known = set(DDColorColorizer._hub_mixin_init_parameters)
    unknown = sorted(set(config) - known)
    if unknown:
        raise ModelUnavailable(
            f"{file} has settings this DDColor port does not know: {', '.join(unknown)}"
        )
    return config


def check_layout(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Refuse a state dict whose keys or shapes differ from ``model``'s, naming the first few."""
    expected = model.state_dict()
    problems = []
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    for label, keys in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("wrong shape", wrong_shape),
    ):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            problems.append(f"{label}: {', '.join(keys[:3])}{more}")
    if problems:
        raise ModelUnavailable(
            f"{what} do not fit the {model.name!r} layout ({getattr(model, 'encoder_name', '')}): "
            + "; ".join(problems)
        )


@register_published_ddcolor(
    "ddcolor-artistic",
    "DDColor-L trained on ImageNet plus artistic images, without the colourfulness loss",
    "piddnad/ddcolor_artistic",
)
class DDColorArtisticColorizer(DDColorColorizer):
    name = "ddcolor-artistic"


@register_published_ddcolor(
    "ddcolor-paper", "DDColor-L as in the paper (ImageNet)", "piddnad/ddcolor_paper"
)
class DDColorPaperColorizer(DDColorColorizer):
    name = "ddcolor-paper"


@register_published_ddcolor(
    "ddcolor-tiny",
    "DDColor-T (ConvNeXt-T, 55 M parameters; ImageNet): the light DDColor",
    "piddnad/ddcolor_paper_tiny",
)
class DDColorTinyColorizer(DDColorColorizer):
    name = "ddcolor-tiny"
    default_encoder = "convnext-t"
