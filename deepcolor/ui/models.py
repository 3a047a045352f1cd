"""Which models this installation can run, and one cached pipeline per model.

The list comes from the registry, so a newly registered model appears in the app by itself.
A model whose weights are missing is listed as unavailable with the library's reason instead of
breaking the app; weights are loaded on first use and kept (models load once per process).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ..errors import DeepColorError, ModelUnavailable, UnknownModel
from ..factory import create_colorizer, default_weights_problem
from ..models.base import Colorizer
from ..pipeline import ColorizationPipeline, resolve_device
from ..published import DefaultChoice, choose_default_model
from ..registry import DEFAULT_AUTOMATIC, ColorizerInfo, list_colorizers
from .diffusion import missing_weights
from .settings import AppSettings

PREFERRED_AUTOMATIC = DEFAULT_AUTOMATIC
PREFERRED_GUIDED = "siggraph17"
FALLBACK_MODEL = "tint"


@dataclass(frozen=True)
class ModelStatus:
    """A registered model as the app shows it."""

    name: str
    summary: str
    available: bool
    reason: str = ""  # why it is unavailable, in the library's words
    needs: tuple[str, ...] = ()
    accepts: tuple[str, ...] = ()
    trainable: bool = True

    def takes(self, condition: str) -> bool:
        return condition in self.needs or condition in self.accepts

    @property
    def automatic(self) -> bool:
        """Colourises from L alone (no reference, prompt or other required input)."""
        return not self.needs


def probe(info: ColorizerInfo) -> ModelStatus:
    """Whether ``info``'s default weights can be found, without loading them (cheap at startup)."""
    common = dict(
        name=info.name,
        summary=info.summary,
        needs=tuple(info.needs),
        accepts=tuple(info.accepts),
        trainable=info.trainable,
    )
    reason = default_weights_problem(info)  # never downloads: cached, or downloadable on use
    if reason:
        return ModelStatus(available=False, reason=reason, **common)
    try:
        if "prompt" in info.needs:  # diffusion models build cheaply; their weights load later
            reason = missing_weights(create_colorizer(info.name))
            if reason:
                return ModelStatus(available=False, reason=reason, **common)
    except DeepColorError as exc:
        return ModelStatus(available=False, reason=str(exc), **common)
    return ModelStatus(available=True, **common)


class ModelCatalog:
    """The models this installation can run, as the app sees them: statuses, defaults, and one
    loaded pipeline per model, kept for the life of the process.

    ``models`` adds ready-made :class:`~deepcolor.models.base.Colorizer` instances by name
    (always available), e.g. a model trained in the same Python process or a small one in a test.
    """

    def __init__(
        self,
        settings: AppSettings | None = None,
        *,
        models: dict | None = None,
        include_registry: bool = True,
    ) -> None:
        self.settings = settings or AppSettings()
        self._instances = dict(models or {})
        infos = list_colorizers() if include_registry else []
        self._infos = {info.name: info for info in infos if info.name not in self._instances}
        self._statuses: dict[str, ModelStatus] = {}
        self._pipelines: dict[str, ColorizationPipeline] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._default: DefaultChoice | None = None

    # --- what exists ------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted({*self._infos, *self._instances})

    def status(self, name: str) -> ModelStatus:
        with self._guard:
            if name in self._statuses:
                return self._statuses[name]
        if name in self._instances:
            model = self._instances[name]
            status = ModelStatus(
                name=name,
                summary=(type(model).__doc__ or name).strip().splitlines()[0],
                available=True,
                needs=tuple(model.needs),
                accepts=tuple(model.accepts),
                # "learned" = has something to train (the baselines do not override the loss)
                trainable=type(model).training_loss is not Colorizer.training_loss,
            )
        elif name in self._infos:
            status = probe(self._infos[name])
        else:
            raise UnknownModel(
                f"unknown model {name!r}; available models: {', '.join(self.names())}"
            )
        with self._guard:
            return self._statuses.setdefault(name, status)

    def statuses(self) -> list[ModelStatus]:
        return [self.status(name) for name in self.names()]

    def available(self, condition: str | None = None, automatic: bool | None = None) -> list[str]:
        """Names of the available models, optionally only those taking ``condition``."""
        out = []
        for status in self.statuses():
            if not status.available:
                continue
            if condition is not None and not status.takes(condition):
                continue
            if automatic is not None and status.automatic != automatic:
                continue
            out.append(status.name)
        return out

    def default_choice(self) -> DefaultChoice:
        """The library's choice (``DEEPCOLOR_DEFAULT_MODEL``, else ``ddcolor`` when its weights
        can be had, else ``blend``) and why, if it is available here; else the fallback of
        :meth:`_fallback_model`. Decided once per catalog."""
        if self._default is None:
            choice = choose_default_model()
            if choice.name not in self.available(automatic=True):
                fallback = self._fallback_model()
                choice = DefaultChoice(fallback, f"{choice.name} is not available here")
            self._default = choice
        return self._default

    def default_model(self) -> str:
        return self.default_choice().name

    def _fallback_model(self) -> str:
        """``DEFAULT_AUTOMATIC`` (``blend``) when it loads, else the first available learned
        model, else tint."""
        candidates = self.available(automatic=True)
        if PREFERRED_AUTOMATIC in candidates:
            return PREFERRED_AUTOMATIC
        learned = [n for n in candidates if self.status(n).trainable]
        if learned:
            return learned[0]
        return (
            FALLBACK_MODEL if FALLBACK_MODEL in candidates else (candidates or [FALLBACK_MODEL])[0]
        )

    def default_for(self, condition: str) -> str | None:
        """The model the guided / reference / prompt tab starts with, or None."""
        names = self.available(condition)
        if condition == "hints" and PREFERRED_GUIDED in names:
            return PREFERRED_GUIDED
        return names[0] if names else None

    # --- running ----------------------------------------------------------------------------
    def pipeline(self, name: str) -> ColorizationPipeline:
        """The cached pipeline for ``name``, loading its weights on the first call only."""
        status = self.status(name)
        if not status.available:
            raise ModelUnavailable(f"model {name!r} is unavailable here: {status.reason}")
        with self._guard:
            if name in self._pipelines:
                return self._pipelines[name]
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:  # two visitors asking for a cold model load it once
            with self._guard:
                if name in self._pipelines:
                    return self._pipelines[name]
            pipe = self._load(name)
            with self._guard:
                self._pipelines[name] = pipe
        return pipe

    def loaded(self) -> list[str]:
        with self._guard:
            return sorted(self._pipelines)

    def _load(self, name: str) -> ColorizationPipeline:
        device = None if self.settings.device in ("", "auto") else self.settings.device
        try:
            model = self._instances.get(name) or create_colorizer(name)
            return ColorizationPipeline(model, device=device, max_pixels=self.settings.max_pixels)
        except DeepColorError as exc:
            self._mark_unavailable(name, str(exc))
            raise ModelUnavailable(f"model {name!r} could not be loaded: {exc}") from exc
        except (OSError, RuntimeError, ValueError) as exc:  # damaged weights, out of memory
            self._mark_unavailable(name, f"{type(exc).__name__}: {exc}")
            raise ModelUnavailable(f"model {name!r} could not be loaded: {exc}") from exc

    def _mark_unavailable(self, name: str, reason: str) -> None:
        old = self.status(name)
        with self._guard:
            self._statuses[name] = ModelStatus(
                name=name,
                summary=old.summary,
                available=False,
                reason=reason,
                needs=old.needs,
                accepts=old.accepts,
                trainable=old.trainable,
            )


# --- what the page says about the models -----------------------------------------------------
def models_markdown(catalog: ModelCatalog) -> str:
    """The Models tab: every registered model, whether it runs here, and what it is or why not."""
    rows = ["| model | status | what it is / why not |", "|---|---|---|"]
    for s in catalog.statuses():
        state = "available" if s.available else "unavailable"
        text = s.summary if s.available else s.reason
        extra = f" ({', '.join(s.needs)} needed)" if s.needs else ""
        rows.append(f"| `{s.name}` | {state}{extra} | {text.replace('|', '/')} |")
    return "\n".join(rows)


def model_lines(catalog: ModelCatalog, names: list[str]) -> str:
    """One line per model saying what it is (a Markdown list)."""
    return "\n".join(f"- `{name}`: {catalog.status(name).summary}" for name in names)


def device_label(catalog: ModelCatalog, on_zero_gpu: bool = False) -> str:
    """Where the models run, for the page's header ("CPU", "CUDA", "ZeroGPU")."""
    if on_zero_gpu:
        return "ZeroGPU"
    device = catalog.settings.device
    return resolve_device(None if device in ("", "auto") else device).type.upper()
