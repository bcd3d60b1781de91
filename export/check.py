"""`python -m export.check DIR`: re-run the golden checks of an export directory on its stored frames.

Use it after editing or rebuilding any graph in DIR: it compares every stage with
the reference logits stored at export time (golden.npz: PyTorch's, or the QONNX graph's
for a QONNX source) and names the first stage
and node that diverge. Exit status 0 when everything agrees, 1 when a check fails.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from radioml.cli import run_main


def check_dir(export_dir: Path, tol: float = 1e-4):
    """The CheckReport of an existing export directory."""
    from .golden import run_checks

    from radioml.artifacts import ExportIO

    export_dir = Path(export_dir)
    io = ExportIO.read(export_dir)  # checks are meant to run on edited graphs: only golden.npz must be as written
    try:
        g = np.load(export_dir / "golden.npz")
    except (OSError, ValueError) as e:
        raise ValueError(f"{export_dir / 'golden.npz'}: not readable ({e})") from None
    from .report_file import ExportReport

    return run_checks(export_dir, g["reference_logits"], g["frames"], g["indices"], io.input_quant, tol,
                      ExportReport.read(export_dir).reference)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.check", description=__doc__.split("\n\n")[0])
    p.add_argument("export_dir", type=Path, help="directory written by python -m export.to_finn")
    p.add_argument("--tol", type=float, default=1e-4, help="max |logit diff| relative to max(1, |logit|)")
    a = p.parse_args(argv)
    from .to_finn import table

    def work():
        rep = check_dir(a.export_dir, a.tol)
        print(table(rep))
        bad = rep.first_failure()
        if bad:
            print(f"error: first diverging stage {bad.stage}: {bad.detail}", file=sys.stderr)
            return 1
        return 0

    return run_main(work, (ValueError,))


if __name__ == "__main__":
    sys.exit(main())
