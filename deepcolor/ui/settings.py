"""The app's limits and switches, read from the environment (a Space sets them as variables)."""

from __future__ import annotations

import os
from dataclasses import dataclass


def _env_float(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    try:
        return float(text) if text else default
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} is not a number") from None


@dataclass(frozen=True)
class AppSettings:
    """Limits that keep one visitor from exhausting a shared server."""

    # Photos are opened up to the library's 50 MP; larger than this, they are downscaled to it
    # before colourising (the full-resolution recombination is what costs the server memory).
    max_megapixels: float = 16.0
    max_file_size: str = "25mb"  # per upload, enforced by Gradio before our code runs
    concurrency: int = 2  # model calls running at once; more wait in the queue
    queue_size: int = 32  # waiting requests beyond which new ones are refused
    batch_max_files: int = 200
    batch_max_total_megabytes: float = 500.0  # uncompressed bytes read from one batch (zip bombs)
    video_max_seconds: float = 20.0  # longer clips are for the command line
    video_max_frames: int = 600
    device: str = "auto"

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1_000_000)

    @property
    def batch_max_total_bytes(self) -> int:
        return int(self.batch_max_total_megabytes * 1024 * 1024)

    @classmethod
    def from_env(cls) -> AppSettings:
        """``DEEPCOLOR_APP_*`` variables override the defaults."""
        return cls(
            max_megapixels=_env_float("DEEPCOLOR_APP_MAX_MEGAPIXELS", cls.max_megapixels),
            max_file_size=os.environ.get("DEEPCOLOR_APP_MAX_FILE_SIZE", cls.max_file_size),
            concurrency=int(_env_float("DEEPCOLOR_APP_CONCURRENCY", cls.concurrency)),
            queue_size=int(_env_float("DEEPCOLOR_APP_QUEUE_SIZE", cls.queue_size)),
            batch_max_files=int(_env_float("DEEPCOLOR_APP_BATCH_MAX_FILES", cls.batch_max_files)),
            batch_max_total_megabytes=_env_float(
                "DEEPCOLOR_APP_BATCH_MAX_MEGABYTES", cls.batch_max_total_megabytes
            ),
            video_max_seconds=_env_float("DEEPCOLOR_APP_MAX_VIDEO_SECONDS", cls.video_max_seconds),
            video_max_frames=int(
                _env_float("DEEPCOLOR_APP_MAX_VIDEO_FRAMES", cls.video_max_frames)
            ),
            device=os.environ.get("DEEPCOLOR_DEVICE", cls.device),
        )
