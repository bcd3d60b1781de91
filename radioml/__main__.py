"""`python -m radioml info FILE` checks a RadioML-layout file; `cache FILE --dir D` builds the one-time .npy cache."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .classes import SNRS_DB
from .cli import run_main
from .dataset import DatasetError, RadioMLFile, build_cache


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m radioml", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("info", help="check the layout and print sizes and the challenge split")
    i.add_argument("file", help="RadioML 2018.01A-layout HDF5 file")
    c = sub.add_parser("cache", help="convert X once to a raw .npy read in place (for chunked/compressed files)")
    c.add_argument("file", help="RadioML 2018.01A-layout HDF5 file")
    c.add_argument("--dir", required=True, help="cache directory")
    a = p.parse_args(argv)

    def work():
        with RadioMLFile(a.file) as ds:
            if a.cmd == "cache":
                print(build_cache(ds, Path(a.dir)))
                return
            sp = ds.split()
            L = ds.layout
            print(f"{a.file}: {L.n_frames:,} frames = {L.n_classes} classes x {L.n_snrs} SNRs "
                  f"({SNRS_DB[0]}..{SNRS_DB[-1]} dB) x {L.block} frames; frames read by {ds.frames.kind}")
            print(f"challenge split: train {len(sp.train):,}, test {len(sp.test):,}; "
                  f"classes balanced: {bool(np.all(np.bincount(ds.labels) == L.n_snrs * L.block))}")

    return run_main(work, (DatasetError,))

if __name__ == "__main__":
    sys.exit(main())
