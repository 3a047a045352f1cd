"""CUDA check of the inference path: every registered model through ColorizationPipeline on the
GPU in float32 / float16 / bfloat16, compared with the CPU result, and timed at 1024x768.

    python bench/gpu_check.py            # prints one line per model and dtype
    python bench/gpu_check.py unet       # only the named models

Run it on a machine with a CUDA GPU after installing DeepColor, to see that every model gives
the CPU's colours in each precision and how long a photo takes. The models are built with fresh
weights (``weights=None``), so the check needs no download; the time includes the pipeline's
work on the CPU at full resolution.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from deepcolor import ColorizationPipeline, create_colorizer, list_colorizers  # noqa: E402
from deepcolor.errors import DeepColorError  # noqa: E402


def main(names: list[str]) -> None:
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check compares CUDA with the CPU; run it on a GPU")
    print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__)
    rng = np.random.default_rng(0)
    photo = (rng.random((768, 1024, 3)) * 255).astype(np.uint8)
    for info in list_colorizers():
        if info.name == "controlnet" or (names and info.name not in names):
            continue  # controlnet needs Stable Diffusion weights
        try:
            model = create_colorizer(info.name, weights=None)
        except (DeepColorError, Exception) as exc:  # noqa: BLE001 - report every failure
            print(f"{info.name}: cannot build ({type(exc).__name__}: {exc})")
            continue
        conditions = {"reference": photo[::2, ::2]} if "reference" in info.needs else {}
        cpu = ColorizationPipeline(model, device="cpu")(photo, **conditions).ab
        for dtype in ("float32", "float16", "bfloat16"):
            pipe = ColorizationPipeline(model, device="cuda", dtype=dtype)
            try:
                pipe(photo, **conditions)  # warm-up
                torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in range(5):
                    result = pipe(photo, **conditions)
                torch.cuda.synchronize()
                ms = (time.perf_counter() - start) / 5 * 1000
                diff = float(np.abs(result.ab - cpu).max())
                print(
                    f"{info.name:<11} {dtype:<8} {ms:7.1f} ms/image (1024x768)  max |ab - cpu| {diff:.3f}"
                )
            except Exception as exc:  # noqa: BLE001
                print(f"{info.name:<11} {dtype:<8} FAILED: {type(exc).__name__}: {exc}")
        model.to("cpu")


if __name__ == "__main__":
    main(sys.argv[1:])
