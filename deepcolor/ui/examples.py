"""The bundled example photos (small Kodak photos, free for any use; see examples/README.md)."""

from __future__ import annotations

from pathlib import Path

from ..images import IMAGE_SUFFIXES

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


def example_photos() -> list[str]:
    """Paths of the example photos, sorted; empty when the folder is missing."""
    if not EXAMPLES_DIR.is_dir():
        return []
    return [str(p) for p in sorted(EXAMPLES_DIR.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
