"""Training: ``accelerate launch -m train --model NAME --dataset ID_OR_PATH ...``.

``train.data`` turns a Hub or local dataset into batches of CIELAB ``L`` / ``ab`` (also used by
``train.controlnet``); ``train.loop`` is the one loop every feed-forward colouriser goes through.
Nothing heavy is imported here, so ``python -m train --help`` answers quickly.
"""

from .errors import TrainingError

__all__ = ["TrainingError"]
