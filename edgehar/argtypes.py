"""argparse types that check a number and say why in one line (shared by every verb)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def number(kind: type, ok: Callable[[float], bool], rule: str) -> Callable[[str], float]:
    """An argparse type: parse `kind` and check it, with a one-line reason."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} must be {rule}")
        return value

    return parse


positive_float = number(float, lambda v: v > 0, "> 0")
positive_int = number(int, lambda v: v > 0, "> 0")
probability = number(float, lambda v: 0.0 <= v <= 1.0, "within [0, 1]")
non_negative_float = number(float, lambda v: v >= 0, ">= 0")


LOOPBACK_HOST = "127.0.0.1"  # where `--serve PORT` listens when no host is given


def host_port(text: str) -> tuple[str, int]:
    """argparse type of `--serve [HOST:]PORT`: (host, port); 127.0.0.1 when no host is
    given, IPv6 hosts in brackets ([::1]:8080), port 0 for any free port."""
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host = LOOPBACK_HOST
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # a bare IPv6 address: ambiguous without brackets
    if not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not [HOST:]PORT with a port from 0 to 65535 "
                                         "(e.g. 8080, 0.0.0.0:8080 or [::1]:8080)")
    return host, int(port)
