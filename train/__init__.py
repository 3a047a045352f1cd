"""Training: ``accelerate launch -m train --model NAME --dataset ID_OR_PATH ...``.

``train.skeleton`` is the one run, in named phases, that both entry points go through;
``train.loop`` fills it in for every feed-forward colouriser (``-m train``) and
``train.controlnet`` for the ControlNet (``-m train.controlnet``). ``train.data`` turns a Hub or
local dataset, downloaded or streamed, into batches of CIELAB ``L`` / ``ab``. Nothing heavy is
imported here, so ``python -m train --help`` answers quickly.
"""

from .errors import TrainingError

__all__ = ["TrainingError"]
