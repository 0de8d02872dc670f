"""`--set key=value`: model and input-pipeline settings from text, checked against their dataclass.

One mechanism serves `edgehar train --set`, `edgehar evaluate --set` and the component
ablations (`evaluate --components`, models/components.py): a setting is a `key=value`
string, the key is a field of the chosen family's config dataclass (models/*.py) or one
of the input-pipeline fields of `TrainConfig` that the bundle manifest carries
(`PIPELINE_KEYS`), and the value is parsed by that field's type annotation:

- `bool`: true/false, yes/no, on/off, 1/0;  `int`, `float`, `str` as written;
- `Literal[...]`: one of the choices;  `X | None`: `none` or an X;
- tuples (`tuple[int, ...]`, nested stage tables): a Python literal such as `(32, 64)`
  or `((1,16,1,1),(4,24,1,2))`, read with `ast.literal_eval` (never `eval`), each item
  checked against the annotation.

`input_shapes` and `num_classes` come from the data (the manifest), so they cannot be set.
Hand-written: argparse and dataclasses parse no typed `key=value` pairs against a
dataclass, and pydantic would add a dependency to validate six flat config classes.
"""

from __future__ import annotations

import ast
import difflib
import types
import typing
from dataclasses import fields, replace
from typing import Any, Literal, Sequence, Union

from ..errors import EdgeharError
from .registry import model_config_class
from .train import TrainConfig

# TrainConfig fields that are input-pipeline settings (written to the manifest), settable
# like model fields: the MMTSA paper's N, GASF/GADF and sparse/dense rows change these
PIPELINE_KEYS = ("num_segments", "gaf_k", "gaf_kind", "gaf_scaling", "sampling")
# TrainConfig fields that shape the training data rather than the model or its inputs
DATA_KEYS = ("minority_keep",)
FROM_DATA = ("input_shapes", "num_classes")  # set from the manifest, never by hand


class SettingError(EdgeharError, ValueError):
    """A `key=value` setting the chosen model cannot take; the message names key, value and what was expected."""


def setting_keys(model: str) -> list[str]:
    """Every key `--set` accepts for `model`: its config fields (less those the data sets) and the pipeline keys."""
    cls = model_config_class(model)
    return sorted([f.name for f in fields(cls) if f.name not in FROM_DATA] + list(PIPELINE_KEYS + DATA_KEYS))


def parse_settings(model: str, items: Sequence[str]) -> dict[str, Any]:
    """`["key=value", ...]` -> {key: typed value}, each checked against `model`'s config class
    or `TrainConfig`; a later item overrides an earlier one with the same key."""
    cls = model_config_class(model)
    model_types = typing.get_type_hints(cls)
    train_types = typing.get_type_hints(TrainConfig)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key, text = key.strip(), text.strip()
        if not sep or not key:
            raise SettingError(f"--set {item!r}: expected KEY=VALUE")
        if key in FROM_DATA:
            raise SettingError(f"--set {item!r}: {key} comes from the data and cannot be set")
        if key in PIPELINE_KEYS or key in DATA_KEYS:
            hint = train_types[key]
        elif key in model_types and key in {f.name for f in fields(cls)}:
            hint = model_types[key]
        else:
            known = setting_keys(model)
            close = difflib.get_close_matches(key, known, n=1)
            mean = f"; did you mean {close[0]!r}?" if close else ""
            raise SettingError(f"--set {item!r}: unknown key {key!r} for {model}{mean} (valid: {', '.join(known)})")
        try:
            out[key] = parse_value(text, hint)
        except ValueError as exc:
            raise SettingError(f"--set {item!r}: {key} takes {describe(hint)}, got {text!r} ({exc})") from None
        if key == "minority_keep" and not 0.0 < out[key] <= 1.0:
            raise SettingError(f"--set {item!r}: minority_keep takes a number in (0, 1], got {text!r}")
    _check_model_config(model, cls, {k: v for k, v in out.items() if k not in PIPELINE_KEYS + DATA_KEYS}, items)
    return out


def apply_settings(cfg: TrainConfig, items: Sequence[str]) -> TrainConfig:
    """`cfg` with the settings applied: pipeline and data keys replace TrainConfig fields,
    model keys go into `model_config` (on top of what it already holds)."""
    values = parse_settings(cfg.model, items)
    direct = {k: v for k, v in values.items() if k in PIPELINE_KEYS + DATA_KEYS}
    model = {**cfg.model_config, **{k: v for k, v in values.items() if k not in direct}}
    return replace(cfg, model_config=model, **direct)


def _check_model_config(model: str, cls: type, values: dict[str, Any], items: Sequence[str]) -> None:
    """Build the config with the family's defaults to run its own range checks (`__post_init__`),
    so `dropout=2` fails here, as one line, not as an assertion deep in training."""
    try:
        cls(**values)
    except (AssertionError, ValueError) as exc:
        raise SettingError(f"--set {' '.join(items)}: {model} rejects it: {exc}") from None


def parse_value(text: str, hint: Any) -> Any:
    """`text` as a value of type `hint`; ValueError saying why not."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if text.lower() in ("none", "null") and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options:
            try:
                return parse_value(text, option)
            except ValueError:
                continue
        raise ValueError("not " + " or ".join(describe(o) for o in options))
    if origin is tuple:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ValueError("not a Python literal tuple") from None
        return check_value(value, hint)
    return check_value(_scalar(text, hint), hint)


def _scalar(text: str, hint: Any) -> Any:
    if hint is bool:
        low = text.lower()
        if low in ("true", "yes", "on", "1"):
            return True
        if low in ("false", "no", "off", "0"):
            return False
        raise ValueError("not a boolean")
    if hint is int:
        return int(text)
    if hint is float:
        return float(text)
    if typing.get_origin(hint) is Literal:
        kinds = {type(a) for a in typing.get_args(hint)}
        return int(text) if kinds == {int} else text
    return text


def check_value(value: Any, hint: Any) -> Any:
    """`value` (already a Python object) checked against `hint`; lists become tuples."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ValueError(f"not one of {', '.join(map(repr, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            raise ValueError(f"{value!r} is not a tuple")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(check_value(v, args[0]) for v in value)
        if len(value) != len(args):
            raise ValueError(f"{value!r} needs {len(args)} items")
        return tuple(check_value(v, a) for v, a in zip(value, args))
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(hint, type) and (not isinstance(value, hint) or (hint is int and isinstance(value, bool))):
        raise ValueError(f"{value!r} is not {describe(hint)}")
    return value


def describe(hint: Any) -> str:
    """What a value of type `hint` looks like, for error messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (Union, types.UnionType):
        return " or ".join("none" if a is type(None) else describe(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a tuple ({describe(args[0])} each)"
        return f"a tuple of ({', '.join(map(describe, args))})"
    return {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))
