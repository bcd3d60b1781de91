"""Files written whole or not at all: a temporary file beside the target, fsync, then rename.

Every stage writes its results through these, so a crash or a full disk leaves the
previous file (or none), never half of one. The temporary carries the writing process's id
(`.{stem}.tmp{pid}{suffix}`); those of processes that died (killed, out of disk) are deleted
the next time the same file is written. Importable on a PYNQ board (stdlib only).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path


def sweep_stale_temporaries(path) -> list[Path]:
    """Delete the temporaries of `path` left by processes that are no longer running."""
    from .publish import pid_alive

    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.stem)}\.tmp(\d+){re.escape(path.suffix)}$")
    removed = []
    for p in path.parent.glob(f".{path.stem}.tmp*{path.suffix}"):
        m = pattern.match(p.name)
        if m and p.is_file() and int(m[1]) != os.getpid() and not pid_alive(int(m[1])):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path` (same suffix, for writers that infer the format);
    once the block succeeds it is synced and renamed onto `path`, otherwise removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temporaries(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path, text: str) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return Path(path)


def write_json(path, obj, indent: int = 1) -> Path:
    return write_text(path, json.dumps(obj, indent=indent))
