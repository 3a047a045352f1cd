"""Imported by a training subprocess (``--import_modules tiny_models_worker``): registers the tiny
test-only models of :mod:`test_train_support` in that process only."""

from test_train_support import TINY_MODELS, TINY_SUMMARY

from deepcolor.registry import register_colorizer

for _name, _cls, _needs in TINY_MODELS:
    register_colorizer(_name, summary=TINY_SUMMARY, needs=_needs)(_cls)
