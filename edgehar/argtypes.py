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
