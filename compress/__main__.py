"""`python -m compress --start MODEL --data FILE --out DIR --board ZCU104 --target-fps 240000`:
the smallest accelerator that holds the accuracy at the user's frame rate.

A search over channels and bits together (compress/search.py): every step measures each
candidate move's saving in FINN-estimated LUTs at the target rate (the folding the build
would choose) and its accuracy cost, fine-tunes the best one with distillation from the
start model, and keeps it only if the feedback accuracy holds the floor (FMP's rule, with a
shrinking channel step). Every kept step is a point of DIR/frontier.json and frontier.png;
each point's model.pt goes through `python -m export.to_finn --run` and `python -m build`.
Rerunning the same command resumes the search.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import typing

from radioml.cli import run_main

from train.config import flag_type

from .config import SearchConfig


def parser() -> argparse.ArgumentParser:
    doc = __doc__.split("\n\n")
    p = argparse.ArgumentParser(prog="python -m compress", description=doc[0].split(":", 1)[1].strip(),
                                epilog="\n\n".join(doc[1:]), formatter_class=argparse.RawDescriptionHelpFormatter)
    hints = typing.get_type_hints(SearchConfig)
    for f in dataclasses.fields(SearchConfig):
        choices = f.metadata.get("choices")
        shown = ",".join(f.default) if isinstance(f.default, tuple) else f.default
        within = f", range {f.metadata['within']}" if f.metadata.get("within") else ""
        p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=flag_type(hints[f.name]), default=f.default,
                       choices=choices, help=f"{f.metadata['help']} (default: {shown}{within})")
    return p


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    cfg = SearchConfig(**vars(a))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from .search import search

    return run_main(lambda: search(cfg) and None, (ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
