"""What every command-line entry point shares: one-line errors and exit status 2 on bad input."""
from __future__ import annotations

import sys


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (or its type when it has none)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def run_main(work, errors=(ValueError, OSError)) -> int:
    """Call `work()`; an expected error becomes `error: <first line>` on stderr and exit status 2.
    `work` may return an exit status (None means 0)."""
    try:
        rc = work()
    except errors as e:
        print(f"error: {first_line(e)}", file=sys.stderr)
        return 2
    return 0 if rc is None else int(rc)
