"""Config fields that carry their command-line help: one place for a field's default, meaning and choices."""
from __future__ import annotations

from dataclasses import field


def opt(default, help: str, choices=None, factory=None):
    """A dataclass field with its flag's help text (and its choices, for enumerated fields)."""
    meta = {"help": help, "choices": choices}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)
