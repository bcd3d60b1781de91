"""`python -m radioml info FILE` checks a RadioML-layout file; `cache FILE --dir D` builds the one-time .npy cache."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from .classes import SNRS_DB
from .dataset import DatasetError, RadioMLFile, build_cache


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m radioml", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("info", help="check the layout and print sizes and the challenge split")
    i.add_argument("file")
    c = sub.add_parser("cache", help="convert X once to a raw .npy read in place (for chunked/compressed files)")
    c.add_argument("file")
    c.add_argument("--dir", required=True, help="cache directory")
    a = p.parse_args(argv)
    try:
        with RadioMLFile(a.file) as ds:
            if a.cmd == "cache":
                print(build_cache(ds, __import__("pathlib").Path(a.dir)))
                return 0
            sp = ds.split()
            L = ds.layout
            print(f"{a.file}: {L.n_frames:,} frames = {L.n_classes} classes x {L.n_snrs} SNRs "
                  f"({SNRS_DB[0]}..{SNRS_DB[-1]} dB) x {L.block} frames; frames read by {ds.frames.kind}")
            print(f"challenge split: train {len(sp.train):,}, test {len(sp.test):,}; "
                  f"classes balanced: {bool(np.all(np.bincount(ds.labels) == L.n_snrs * L.block))}")
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
