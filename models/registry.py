"""timm-style model registry: factories registered by name, built from a config dict.

The bundle manifest stores `model` (a registry name) and `model_config` (a plain dict);
the trainer rebuilds the model with `create_model(manifest.model, **manifest.model_config)`
and writes `model.config.to_dict()` back. So every registered family has a config
dataclass with `to_dict()` / `from_dict()` that rejects unknown keys, and the registry
records which class that is (`model_config_class`). Tests parametrise over
`list_models()` so a new model is tested the moment it is registered.
"""

from __future__ import annotations

import difflib
import fnmatch
from importlib import import_module
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, ClassVar, TypeVar

from torch import nn

from ..errors import EdgeharError

F = TypeVar("F", bound=Callable[..., nn.Module])

_factories: dict[str, Callable[..., nn.Module]] = {}
_config_classes: dict[str, type] = {}


class ModelNotFoundError(EdgeharError, ValueError):
    """An unknown model name; carries the name, the known names and a close match."""

    def __init__(self, name: str, known: list[str]):
        self.name = name
        self.known = known
        close = difflib.get_close_matches(name, known, n=1)
        self.suggestion = close[0] if close else None
        hint = f"; did you mean {self.suggestion!r}?" if self.suggestion else ""
        super().__init__(f"unknown model {name!r}{hint} (known: {', '.join(known)})")


class ModelConfigError(EdgeharError, ValueError):
    """A model config dict names keys the config class does not have."""

    def __init__(self, config_class: str, unknown: list[str], known: list[str]):
        self.unknown = unknown
        super().__init__(f"{config_class}: unknown key(s) {unknown} (known: {known})")


@dataclass(frozen=True)
class InputRecipe:
    """How the trainer feeds a model family when the user does not say otherwise.

    Written into the bundle manifest at training time (modality types, N, K, scaling),
    so the runtime builds exactly these inputs from the manifest alone.
    """

    sensor_type: str = "gaf"  # what sensor modalities become: "gaf" images or raw "series"
    num_segments: int = 3  # N segments per observation window
    k: int = 32  # K samples per sensor window
    # "window": per-window min-max (official MMTSA); "range": calibrated per-channel ranges,
    # which keeps amplitude -- what a model reading raw series needs
    scaling: str = "window"


# The recipe of every family that reads raw sensor windows (CAM, M-Mixer, non-local fusion,
# residual attention, the baselines): the recurrent/1-D models of those papers see a short
# sequence of windows, amplitude kept (calibrated ranges), not per-window min-max images.
SERIES_RECIPE = InputRecipe(sensor_type="series", num_segments=8, k=32, scaling="range")


class ConfigMixin:
    """`to_dict()` / `from_dict()` for a model config dataclass, and the family's `input_recipe`.

    JSON turns tuples into lists, so `from_dict` turns every list back into a tuple
    (configs hold only scalars and nested tuples). Unknown keys raise, so a misspelt key
    in a manifest never falls back to a default silently.
    """

    input_recipe: ClassVar[InputRecipe] = InputRecipe()
    # The family's component ablation from its paper (`edgehar evaluate --components`): row
    # name -> `--set` items (models/settings.py) that turn the component off or swap it;
    # the row with no items is the full model. Defined next to each family's config.
    components: ClassVar[dict[str, tuple[str, ...]]] = {}
    # Fields every model config declares (annotations only: this mixin is no dataclass);
    # the properties and the check below derive from them.
    input_shapes: tuple[tuple[int, ...], ...]  # per modality, segments first
    dropout: float
    modality_dropout: float

    @property
    def num_segments(self) -> int:
        return self.input_shapes[0][0]

    @property
    def num_modalities(self) -> int:
        return len(self.input_shapes)

    def check_dropouts(self) -> None:
        """The two dropout rates every family has, in range (for `__post_init__`)."""
        assert 0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}"
        assert 0.0 <= self.modality_dropout <= 1.0, f"modality_dropout must be in [0, 1], got {self.modality_dropout}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelConfigError(cls.__name__, unknown, sorted(known))
        return cls(**{k: _tuplify(v) for k, v in data.items()})


def _tuplify(v: Any) -> Any:
    return tuple(_tuplify(x) for x in v) if isinstance(v, (list, tuple)) else v


def register_model(name: str, config_class: type) -> Callable[[F], F]:
    """Decorator: register `factory(**cfg) -> nn.Module` under `name`."""

    def decorator(factory: F) -> F:
        assert name not in _factories, f"model {name!r} is already registered"
        assert hasattr(config_class, "from_dict"), f"{config_class.__name__} needs from_dict()/to_dict()"
        _factories[name] = factory
        _config_classes[name] = config_class
        return factory

    return decorator


# The project's model families: imported (and so registered) on the first registry
# lookup, so `import edgehar.models` stays cheap. Add a family's module name here.
FAMILIES = ("mmtsa", "cam", "mmixer", "nonlocal_fusion", "resatt", "baselines")


def _import_families() -> None:
    for family in FAMILIES:
        import_module(f"{__package__}.{family}")


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style pattern, sorted."""
    _import_families()
    return sorted(n for n in _factories if fnmatch.fnmatchcase(n, pattern))


def _check(name: str) -> None:
    _import_families()
    if name not in _factories:
        raise ModelNotFoundError(name, list_models())


def create_model(name: str, **cfg: Any) -> nn.Module:
    """Build a registered model; `cfg` are config fields overriding the factory's defaults."""
    _check(name)
    return _factories[name](**cfg)


def model_config_class(name: str) -> type:
    """The config dataclass of a registered model (has `from_dict` / `to_dict`)."""
    _check(name)
    return _config_classes[name]
