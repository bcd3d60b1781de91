"""Distillation against plain cross-entropy: the same compressed model, the same epochs, the same frames.

The start model (the dense 64-filter reference) is compressed by one fixed set of moves
(default: the two rate-limiting conv blocks to 48 filters and the first activation to 3
bits, so both runs have exactly the same FINN accelerator), then fine-tuned twice from the
same weights with the same seeds and frames: once with cross-entropy alone, once with
distillation from the start model (compress/finetune.py). Prints the feedback accuracy
after every epoch, and the test accuracy, of both.

    python -m benchmarks.distillation_vs_ce [--start MODEL] [--data FILE] [--epochs 4]
"""
from __future__ import annotations

import argparse
import copy
import sys


def parse_moves(text: str):
    from compress.moves import KINDS, Move

    out = []
    for item in text.split(","):
        kind, index, value = item.split(":")
        if kind not in KINDS:
            raise ValueError(f"--moves: {item!r}: kind must be one of {KINDS}")
        out.append(Move(kind, int(index), int(value)))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.distillation_vs_ce", description=__doc__.split("\n\n")[0])
    p.add_argument("--start", default="models/reference/vgg10-w4a4-f64/model.pt",
                   help="trained start model, also the teacher (default: %(default)s)")
    p.add_argument("--data", default="data/synthetic.hdf5", help="RadioML-layout file (default: %(default)s)")
    p.add_argument("--moves", default="channels:0:48,channels:1:48,act:0:3",
                   help="kind:index:value moves applied to the start model, comma-separated (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=4, help="fine-tuning epochs of each run (default: %(default)s)")
    p.add_argument("--train-subset", type=float, default=0.06,
                   help="fraction of the training frames each epoch draws (default: %(default)s)")
    p.add_argument("--kd-weight", type=float, default=0.5, help="distillation weight (default: %(default)s)")
    p.add_argument("--kd-temperature", type=float, default=4.0, help="distillation temperature (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    a = p.parse_args(argv)

    import torch

    from build.boards import board
    from compress.estimates import LayerEstimates, Shape
    from compress.finetune import accuracy, epoch_frames, train_epoch
    from compress.moves import apply_move
    from radioml.dataset import RadioMLFile
    from train.saved_model import load_model

    torch.set_num_threads(a.threads)
    teacher, mcfg, _ = load_model(a.start)
    ds = RadioMLFile(a.data)
    split = ds.split(None, 0.1)
    model, cfg = teacher, mcfg
    for m in parse_moves(a.moves):
        model, cfg = apply_move(model, cfg, m)
    hw = LayerEstimates(board("ZCU104"), cfg).at_rate(Shape.of(cfg), 240_000, 4.0)
    print(f"start {a.start}: feedback {accuracy(teacher, ds, split.val):.4f}; compressed to conv {list(cfg.convs)}, "
          f"bits {cfg.bits_label()}: {hw['LUT']:,.0f} LUT at 240,000 frames/s on ZCU104 (reaches {hw['fps']:,.0f}); "
          f"before fine-tuning {accuracy(model, ds, split.val):.4f}")
    rows = {}
    for name, w in (("cross-entropy", 0.0), (f"distillation (w {a.kd_weight}, T {a.kd_temperature:g})", a.kd_weight)):
        torch.manual_seed(0)
        student, opt, accs = copy.deepcopy(model), None, []
        for e in range(a.epochs):
            frames = epoch_frames(split.train, a.train_subset, 0, 1, e)
            opt, _ = train_epoch(student, teacher, ds, frames, lr=5e-4, batch_size=64, kd_weight=w,
                                 kd_temperature=a.kd_temperature, seed=0, epoch_key=e, optimizer=opt,
                                 desc=f"{name} epoch {e + 1}")
            accs.append(accuracy(student, ds, split.val))
        rows[name] = (accs, accuracy(student, ds, split.test))
    print(f"\n{'fine-tuning':<36}" + "".join(f"{f'epoch {e + 1}':>10}" for e in range(a.epochs)) + f"{'test':>10}")
    for name, (accs, test) in rows.items():
        print(f"{name:<36}" + "".join(f"{v:>10.4f}" for v in accs) + f"{test:>10.4f}")
    (ce, ce_t), (kd, kd_t) = rows.values()
    per_epoch = len(epoch_frames(split.train, a.train_subset, 0, 1, 0))
    print(f"\ndistillation - cross-entropy: {kd[-1] - ce[-1]:+.4f} feedback, {kd_t - ce_t:+.4f} test "
          f"(same accelerator, {a.epochs} epochs of {per_epoch:,} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
