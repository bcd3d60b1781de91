"""`python -m train.ladder`: the dense width ladder, every width trained to its plateau with one recipe.

Each width N of --widths starts from the challenge sandbox's VGG10 (trained by Xilinx on the real
RadioML file) narrowed to the N strongest filters of each conv block (L1 norm) and requantised to
4 bits (`train.import_sandbox`), then trains dense (`python -m train`, strategy none) until the
validation accuracy has not improved for --patience epochs (or --max-epochs run out); the best
epoch's model is the result. The ladder is the baseline every compression claim is set beside: a
narrower dense model trained with the same budget.

Runs go to OUT/fN (starts in OUT/start-fN), one after another in the order given; rerunning the
command resumes the unfinished width and skips the finished ones.

    python -m train.ladder --data data/ladder256.hdf5 --out runs/ladder --widths 64,32,16,24,48
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from radioml.cli import run_main

SANDBOX = Path(__file__).resolve().parents[2] / "shared/reference/sandbox-vgg10-w8a8/pretrained_VGG10_w8a8_20.pth"


@dataclass(frozen=True)
class Recipe:
    """The one training recipe of every width (so their accuracies differ by width alone)."""

    bits: int = 4
    lr: float = 1e-3
    batch_size: int = 64
    max_epochs: int = 40
    patience: int = 3  # epochs without a validation-accuracy gain that end a width's run
    lr_factor: float = 0.3  # ReduceLROnPlateau on the validation loss
    lr_patience: int = 1
    seed: int = 0


def start_model(sandbox: Path, width: int, bits: int, out: Path) -> Path:
    """The sandbox model narrowed to `width` filters and requantised, written once to OUT/start-fN/model.pt."""
    from .sandbox import import_sandbox

    path = out / f"start-f{width}" / "model.pt"
    if not path.exists():
        import_sandbox(sandbox, path.parent, bits, None if width == 64 else width)
    return path


def width_config(width: int, data: str, start: Path, run_dir: Path, recipe: Recipe, threads: int, device: str):
    """The TrainConfig of one rung: the recipe, this width, strategy none with the plateau stop."""
    from .config import DataConfig, OptimConfig, PruneConfig, TrainConfig
    from .model import ModelConfig

    r = recipe
    return TrainConfig(
        data=DataConfig(path=data),
        model=ModelConfig(r.bits, r.bits, r.bits, conv_filters=width),
        optim=OptimConfig(lr=r.lr, batch_size=r.batch_size, epochs_per_round=r.max_epochs, plateau_factor=r.lr_factor,
                          plateau_patience=r.lr_patience, stop_patience=r.patience),
        prune=PruneConfig(strategy="none", floor=0.0),
        seed=r.seed, init_from=str(start), run_dir=str(run_dir), threads=threads, device=device)


def run_ladder(data: str, out: Path, widths: list[int], recipe: Recipe, sandbox: Path, threads: int = 0,
               device: str = "auto") -> list[Path]:
    """Train (or resume, or skip when finished) every width in order; the run directories."""
    from .loop import train

    done = []
    for w in widths:
        run_dir = out / f"f{w}"
        if (run_dir / "metrics.json").exists():
            print(f"f{w}: finished ({run_dir / 'metrics.json'}); skipped")
        else:
            cfg = width_config(w, data, start_model(sandbox, w, recipe.bits, out), run_dir, recipe, threads, device)
            train(cfg)
        done.append(run_dir)
    return done


def _widths(s: str) -> list[int]:
    try:
        ws = [int(v) for v in s.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated filter counts, got {s!r}") from None
    if not ws or any(w < 1 or w > 64 for w in ws) or len(set(ws)) != len(ws):
        raise argparse.ArgumentTypeError(f"widths must be distinct filter counts in 1..64 (the sandbox has 64), got {s!r}")
    return ws


def main(argv=None) -> int:
    r = Recipe()
    p = argparse.ArgumentParser(prog="python -m train.ladder", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="RadioML-layout HDF5 file (e.g. a calibrated synthetic set)")
    p.add_argument("--out", required=True, help="directory for the runs (OUT/fN) and their starts (OUT/start-fN)")
    p.add_argument("--widths", type=_widths, default=[64, 32, 16, 24, 48],
                   help="conv filters of each rung, trained in this order (default: 64,32,16,24,48)")
    p.add_argument("--sandbox", type=Path, default=SANDBOX,
                   help="the sandbox's VGG10 w8a8 state dict every rung starts from (default: ../shared/reference/...)")
    p.add_argument("--max-epochs", type=int, default=r.max_epochs, help=f"epoch cap of each rung (default: {r.max_epochs})")
    p.add_argument("--patience", type=int, default=r.patience,
                   help=f"epochs without a validation-accuracy gain that end a rung (default: {r.patience})")
    p.add_argument("--batch-size", type=int, default=r.batch_size,
                   help=f"training batch of every rung (default: {r.batch_size}; a GPU ladder: 1024 with --lr 4e-3)")
    p.add_argument("--lr", type=float, default=r.lr, help=f"Adam's starting learning rate (default: {r.lr})")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to train (default: auto)")
    a = p.parse_args(argv)

    def work():
        if not Path(a.data).is_file():
            raise ValueError(f"--data {a.data}: no such file")
        if not a.sandbox.is_file():
            raise ValueError(f"--sandbox {a.sandbox}: no such file (the sandbox's pretrained_VGG10_w8a8_20.pth)")
        if a.max_epochs < 1 or a.patience < 1 or a.batch_size < 1:
            raise ValueError("--max-epochs, --patience and --batch-size must be >= 1")
        if not 0 < a.lr < 1:
            raise ValueError(f"--lr {a.lr}: must be in (0, 1)")
        recipe = dataclasses.replace(r, max_epochs=a.max_epochs, patience=a.patience, batch_size=a.batch_size, lr=a.lr)
        for d in run_ladder(a.data, Path(a.out), a.widths, recipe, a.sandbox, a.threads, a.device):
            print(d)

    return run_main(work)


if __name__ == "__main__":
    sys.exit(main())
