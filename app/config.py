"""Config files for `edgehar live` (TOML, or YAML where PyYAML is installed).

A config file may hold everything the flags hold; flags given on the command line win.
Unknown keys and bad values fail with the key path and a one-line reason, the way
pydantic (Frigate's config) reports them:

    live.toml: smoothing.k: expected an integer >= 1, got 'five'
    live.toml: camra: unknown key (known: camera, devices, glove, imu, ...)

Example (docs/live-config.md has every key):

    model = "runs/train/bundle"
    glove = "ble://name=Glove"
    imu = ["serial:///dev/ttyACM0", "ble://AA:BB:CC:DD:EE:FF"]   # -> streams imu, imu2
    camera = 0                       # index, video path or GStreamer pipeline
    seconds = 600
    json = "predictions.jsonl"
    save_video = "session.mp4"
    view = "auto"                    # auto | window | headless
    mqtt = "mqtt://broker.local/bench-3?qos=1"   # predictions and health over MQTT (docs/mqtt.md)
    [smoothing]
    mode = "majority"                # majority | ema | none
    k = 5
    [devices]                        # any other stream by name
    imu_ankle = "ble://name=AnkleIMU"
"""

from __future__ import annotations

import difflib
from argparse import ArgumentTypeError
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..argtypes import host_port
from ..errors import EdgeharError
from ..contract.manifest import imu_stream
from .mqtt import parse_mqtt_url

VIEWS = ("auto", "window", "headless")
SMOOTHING_MODES = ("majority", "ema", "none")  # live.Smoother's modes, the flag's and the key's choices
# A live prediction's latency stages (WindowScheduler.predict), in the order they happen;
# with "total" they are the keys of its latency_ms, and they add up to the total.
LATENCY_STAGES = ("late", "rings", "sampling", "gaf", "frames", "inference", "unattributed")
# A stream whose newest sample is older than this when a window ends has dropped out:
# its modality is fed as missing (zeros) and the prediction is marked degraded.
STALE_S = 0.5


class ConfigError(EdgeharError, ValueError):
    """A config file that cannot be used; the message has the file, the key path and why."""

    def __init__(self, file: str, key: str, reason: str):
        self.file, self.key, self.reason = file, key, reason
        super().__init__(": ".join(x for x in (file, key, reason) if x))


Check = Callable[[Any], Any]  # returns the normalised value or raises ValueError(reason)


def _desc(v: Any) -> str:
    return repr(v) if not isinstance(v, (dict, list)) else type(v).__name__


def _str(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"expected a non-empty string, got {_desc(v)}")
    return v


def _url(v: Any) -> str:
    v = _str(v)
    if "://" not in v:
        raise ValueError(f"expected a device URL like serial:///dev/ttyACM0 or ble://name=Glove, got {v!r}")
    return v


def _urls(v: Any) -> list[str]:
    items = v if isinstance(v, list) else [v]
    if not items:
        raise ValueError("expected a device URL or a list of them, got an empty list")
    return [_url(x) for x in items]


def _names(v: Any) -> list[str]:
    items = v if isinstance(v, list) else [v]
    if not items:
        raise ValueError("expected a name or a list of names, got an empty list")
    return [_str(x).strip() for x in items]


def _camera(v: Any) -> str:
    if isinstance(v, bool):
        raise ValueError(f"expected a camera index, video path or GStreamer pipeline, got {v!r}")
    if isinstance(v, int):
        if v < 0:
            raise ValueError(f"a camera index must be >= 0, got {v}")
        return str(v)
    return _str(v)


def _pos_float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
        raise ValueError(f"expected a finite number > 0, got {_desc(v)}")
    return float(v)


def _pos_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"expected an integer >= 1, got {_desc(v)}")
    return v


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {_desc(v)}")
    return v


def _choice(*options: str) -> Check:
    def check(v: Any) -> str:
        if v not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {_desc(v)}")
        return v

    return check


def _serve(v: Any) -> tuple[str, int]:
    """`serve = 8080` or `serve = "0.0.0.0:8080"` -> (host, port), as --serve takes it."""
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise ValueError(f"expected [HOST:]PORT, e.g. 8080 or \"0.0.0.0:8080\", got {_desc(v)}")
    try:
        return host_port(str(v))
    except ArgumentTypeError as exc:
        raise ValueError(str(exc)) from None


def _device_map(v: Any) -> dict[str, str]:
    if not isinstance(v, dict):
        raise ValueError(f"expected a table of stream name = URL, got {_desc(v)}")
    return dict(v)  # values checked per key below


SCHEMA: dict[str, Any] = {
    "model": _str,  # bundle folder
    "glove": _url,
    "imu": _urls,
    "devices": {"*": _url},
    "camera": _camera,
    "seconds": _pos_float,
    "json": _str,
    "save_video": _str,
    "video_fps": _pos_float,
    "view": _choice(*VIEWS),
    "thumbnails": _bool,
    "threads": _pos_int,
    "providers": _names,  # ONNX Runtime execution providers, best first
    "stale_s": _pos_float,
    "mqtt": lambda v: parse_mqtt_url(_str(v)),  # -> an MqttTarget
    "smoothing": {"mode": _choice(*SMOOTHING_MODES), "k": _pos_int},
    "serve": _serve,
    "token": _str,
}


def validate(data: Any, file: str = "", schema: dict[str, Any] = SCHEMA, prefix: str = "") -> dict[str, Any]:
    """Check `data` against `schema`; returns the normalised values (nested dicts kept)."""
    if not isinstance(data, dict):
        raise ConfigError(file, prefix.rstrip("."), f"expected a table of keys, got {_desc(data)}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        rule = schema.get(key, schema.get("*"))
        if rule is None:
            close = difflib.get_close_matches(str(key), list(schema), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(sorted(schema))})"
            raise ConfigError(file, path, "unknown key" + hint)
        if isinstance(rule, dict):
            out[key] = validate(value, file, rule, path + ".")
        else:
            try:
                out[key] = rule(value)
            except ValueError as exc:
                raise ConfigError(file, path, str(exc)) from None
    return out


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and validate a TOML (.toml) or YAML (.yaml / .yml) config file."""
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise ConfigError(name, "", "no such file")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            try:
                import tomli as tomllib  # type: ignore[no-redef]
            except ModuleNotFoundError:
                raise ConfigError(name, "", "TOML needs Python >= 3.11 or the tomli package") from None
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(name, "", f"not valid TOML ({exc})") from None
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ModuleNotFoundError:
            raise ConfigError(name, "", "YAML configs need PyYAML (pip install pyyaml), or use a .toml file") from None
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(name, "", f"not valid YAML ({str(exc).splitlines()[0]})") from None
    else:
        raise ConfigError(name, "", f"unknown config type {suffix!r}; use .toml, .yaml or .yml")
    return validate(data, name)


def device_urls(glove: str | None, imus: list[str] | None, devices: dict[str, str] | None) -> dict[str, str]:
    """Stream name -> URL: --glove is stream "glove", the k-th --imu is "imu", "imu2", ...;
    --device NAME=URL / [devices] name any other stream."""
    urls: dict[str, str] = {}
    if glove:
        urls["glove"] = glove
    for k, url in enumerate(imus or []):
        urls[imu_stream(k)] = url
    for name, url in (devices or {}).items():
        if name in urls and urls[name] != url:
            raise ConfigError("", f"devices.{name}", f"stream {name!r} is given two URLs ({urls[name]} and {url})")
        urls[name] = url
    return urls
