"""`python -m train.import_sandbox PTH --out DIR`: a challenge-sandbox VGG10 state dict as this toolchain's model.pt.

The sandbox notebook (Xilinx/brevitas-radioml-challenge-21) saves `torch.save(model.state_dict())`
of its 8-bit baseline VGG10; this writes it as `DIR/model.pt` (train/sandbox.py has the mapping),
so the model a user trained there is pruned by FMP/IMP (`python -m train --init_from DIR/model.pt`),
exported with every check (`python -m export.to_finn --run DIR`), built and run by the driver.
`--bits N` requantises it to N-bit input, weights and activations (float weights and learned
activation ranges kept; fine-tune it afterwards).
"""
from __future__ import annotations

import argparse
import sys

from radioml.cli import run_main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.import_sandbox", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pth", help="state dict saved by the sandbox notebook (e.g. pretrained_VGG10_w8a8_20.pth)")
    p.add_argument("--out", required=True, help="directory (or .pt path) for the model.pt to write")
    p.add_argument("--bits", type=int, choices=range(2, 9), metavar="{2..8}",
                   help="requantise input, weights and activations to this many bits (default: keep the 8 bits)")
    p.add_argument("--conv-filters", type=int, metavar="N",
                   help="keep the N filters of each conv block with the largest L1 norm (e.g. 32: finn-examples' "
                        "topology; default: all 64)")
    a = p.parse_args(argv)

    def work():
        from .sandbox import import_sandbox

        out, cfg = import_sandbox(a.pth, a.out, a.bits, a.conv_filters)
        print(f"wrote {out}: the sandbox VGG10 at {cfg.bits_label()} bits (input/weights/activations), "
              f"{cfg.convs[0]} conv filters")

    return run_main(work)


if __name__ == "__main__":
    sys.exit(main())
