"""The model catalogue: ``register_colorizer`` / ``colorizer_info`` / ``list_colorizers``.

Modelled on timm's ``_registry``: each model file registers a factory under a unique name with a
description of what it needs. Building a model with its weights is the factory's
(:func:`deepcolor.factory.create_colorizer`), the only place that puts the two together; this
module knows nothing of weights, so model files can import it from below.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import DuplicateModel, UnknownModel


@dataclass(frozen=True)
class ColorizerInfo:
    """What the registry knows about a model without building it."""

    name: str
    factory: Callable[..., Any]
    summary: str
    needs: tuple[str, ...] = ()  # conditions that must be given (e.g. "reference", "prompt")
    accepts: tuple[str, ...] = ()  # optional conditions (e.g. "hints", "temperature")
    weights: str = "none"  # where weights come from, in words
    default_weights: str | None = None  # a weights spec: shipped:NAME, local path or Hub id
    trainable: bool = True
    defaults: dict[str, Any] = field(default_factory=dict)

    def describe_conditions(self) -> str:
        parts = [f"needs {', '.join(self.needs)}"] if self.needs else []
        if self.accepts:
            parts.append(f"accepts {', '.join(self.accepts)}")
        return "; ".join(parts) or "L only"


_REGISTRY: dict[str, ColorizerInfo] = {}


#: the automatic model the app, the CLI and the evaluation report use when none is named
DEFAULT_AUTOMATIC = "blend"


def register_colorizer(
    name: str,
    *,
    summary: str,
    needs: tuple[str, ...] = (),
    accepts: tuple[str, ...] = (),
    weights: str = "none",
    default_weights: str | None = None,
    trainable: bool = True,
    **defaults: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a model class or factory under ``name`` (names are unique).

    A class is told its registration here, once: its ``name``, ``needs`` and ``accepts``
    attributes are set from these arguments (a class does not state them again).
    """

    def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise DuplicateModel(f"a colorizer named {name!r} is already registered")
        if isinstance(factory, type):
            factory.name, factory.needs, factory.accepts = name, tuple(needs), tuple(accepts)
        _REGISTRY[name] = ColorizerInfo(
            name=name,
            factory=factory,
            summary=summary,
            needs=tuple(needs),
            accepts=tuple(accepts),
            weights=weights,
            default_weights=default_weights,
            trainable=trainable,
            defaults=dict(defaults),
        )
        return factory

    return decorator


def unregister_colorizer(name: str) -> None:
    """Remove ``name`` from the registry (a test's temporary model); unknown names raise."""
    if _REGISTRY.pop(name, None) is None:
        raise UnknownModel(f"no colorizer named {name!r} is registered")


@contextlib.contextmanager
def registered_colorizer(
    name: str, factory: Callable[..., Any], **registration: Any
) -> Iterator[Callable[..., Any]]:
    """``register_colorizer(name, **registration)(factory)`` for the ``with`` block only."""
    register_colorizer(name, **registration)(factory)
    try:
        yield factory
    finally:
        unregister_colorizer(name)


def _ensure_models_loaded() -> None:
    from . import models  # noqa: F401  (importing registers every model file)


def colorizer_info(name: str) -> ColorizerInfo:
    """The registry entry for ``name``, or :class:`UnknownModel` naming the choices."""
    _ensure_models_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        choices = ", ".join(sorted(_REGISTRY))
        raise UnknownModel(f"unknown model {name!r}; available models: {choices}") from None


def list_colorizers() -> list[ColorizerInfo]:
    """Every registered model, sorted by name."""
    _ensure_models_loaded()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]
