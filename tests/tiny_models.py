"""Constructor arguments that make every registered model tiny (CPU, well under a second a step).

Shared by the registry-wide model suite and the training tests. A model added later without an
entry here is built with its defaults.
"""

from __future__ import annotations

from typing import Any

_SMALL_DECODER = {"decoder_max_width": 16, "decoder_min_width": 8, "pretrained_encoder": False}
_TINY_DDCOLOR = {
    "input_size": 32,
    "encoder_depths": [1, 1, 1, 1],
    "encoder_dims": [8, 16, 24, 32],
    # wide enough at the output (queries x pixel channels) to learn visibly in a few steps
    "nf": 64,
    "hidden_dim": 32,
    "nheads": 2,
    "dim_feedforward": 32,
    "num_queries": 32,
    "dec_layers": 3,
}

TINY_KWARGS: dict[str, dict[str, Any]] = {
    "eccv16": {"widths": [4, 8, 8, 8, 8, 8, 8, 8], "working_size": 16},
    "siggraph17": {"widths": [4, 8, 8, 8, 8, 8, 8, 8, 8, 8], "working_size": 16},
    "unet": {**_SMALL_DECODER, "working_size": 32},
    "unet_bins": {**_SMALL_DECODER, "working_size": 32},
    "blend": {
        "members": [
            {"model": "unet", "weights": None, "kwargs": {**_SMALL_DECODER, "working_size": 32}},
            {
                "model": "unet_bins",
                "weight": 0.5,
                "weights": None,
                "kwargs": {**_SMALL_DECODER, "working_size": 32},
            },
        ]
    },
    "mobilenet": {**_SMALL_DECODER, "working_size": 32},
    "densenet": {
        **_SMALL_DECODER,
        "working_size": 32,
        "encoder_kwargs": {"growth_rate": 8, "block_config": [1, 1, 1, 1], "bn_size": 1},
    },
    "fusion": {"pretrained_embedding": False, "width": 8, "working_size": 32},
    "exemplar": {**_SMALL_DECODER, "working_size": 32, "match_dim": 8},
    **{
        name: _TINY_DDCOLOR
        for name in ("ddcolor", "ddcolor-artistic", "ddcolor-paper", "ddcolor-tiny")
    },
}
