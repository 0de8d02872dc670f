"""Plain-text tables for the verbs that print them (devices, info)."""

from __future__ import annotations


def columns(header: list[str], rows: list[list[object]], empty: str = "none") -> list[str]:
    """Indented, left-aligned columns; a missing value shows as '-'."""
    if not rows:
        return [f"  {empty}"]
    cells = [header] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  " + "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
