"""Config fields that carry their command-line help: one place for a field's default, meaning, choices and range."""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import field

_RANGE = re.compile(r"^([\[(])\s*([^,]*?)\s*,\s*([^,]*?)\s*([\])])$")


def opt(default, help: str, choices=None, factory=None, within: str | None = None):
    """A dataclass field with its flag's help text, its choices (enumerated fields) and its range (numeric
    fields, in interval notation: "(0, 1]", "[1, inf)"; checked by `check_ranges` before any work)."""
    if within is not None:
        _bounds(within)  # a malformed range fails at import, not at a user's run
    meta = {"help": help, "choices": choices, "within": within}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _bounds(within: str):
    m = _RANGE.match(within)
    if not m:
        raise ValueError(f"range {within!r} is not in interval notation, e.g. (0, 1]")
    lo, hi = (float(b) if b else None for b in (m[2], m[3]))
    return m[1] == "[", lo, hi, m[4] == "]"


def out_of_range(value, within: str) -> bool:
    closed_lo, lo, hi, closed_hi = _bounds(within)
    if lo is not None and (value < lo or (value == lo and not closed_lo)):
        return True
    return hi is not None and (value > hi or (value == hi and not closed_hi))


def check_ranges(cfg, flag=lambda name: "--" + name.replace("_", "-")) -> None:
    """Every number of a config dataclass finite and within its field's range: a one-line error naming the flag."""
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        within = f.metadata.get("within")
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{flag(f.name)} must be a finite number, got {v}")
        if within and out_of_range(v, within):
            raise ValueError(f"{flag(f.name)} must be in {within}, got {v:g}")
