"""`python -m train`: quantisation-aware training of VGG10 with FMP, IMP or no pruning."""
from __future__ import annotations

import argparse
import sys

from radioml.cli import run_main

from .config import add_config_flags, config_from_args


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m train",
        description="Train the challenge's VGG10 with Brevitas QAT and a pruning schedule "
                    "(FMP, IMP, IMP to convergence, or none). Re-running the same command "
                    "resumes from the run directory's checkpoint.")
    add_config_flags(p)
    a = p.parse_args(argv)

    def work():
        from .loop import train
        from .process_group import torchrun_job

        with torchrun_job():
            train(config_from_args(a))

    return run_main(work)


if __name__ == "__main__":
    sys.exit(main())
