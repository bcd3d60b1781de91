"""One prepared script for a GPU machine: training frames/s of the 4-bit VGG10 in each state, then reference runs.

Part 1 times real training steps (Adam, cross-entropy, random frames resident on the device)
of the 64- and 32-filter models with their pruning masks, in each state the project trains
in: the statistics phase (a run from scratch), after it (fine-tuning, pruning), eager and
through train/speed.py's Step (fused QuantReLU, bf16 autocast where the device has it,
torch.compile). Part 2 (unless --no-train) trains the dense width ladder (`python -m train.ladder`'s recipe:
64, 32, 16, 24, 48 filters from the sandbox model, each to its validation plateau) at batch 1024 on --data,
under OUT/ladder; rerunning resumes it.

    python -m radioml.synthetic --out data/ladder1024.hdf5 --frames-per-snr 1024 --seed 1 --profile calibrated
    python -m benchmarks.gpu_train --data data/ladder1024.hdf5 --out runs/gpu
    python -m benchmarks.gpu_train --tiny --device cpu      # what CI runs: seconds, no GPU needed
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from train.ladder import SANDBOX


def _model(filters: int, state: str, device, tiny: bool):
    """A masked 4-bit VGG10 on `device`, in the statistics phase ('stats') or after it ('after')."""
    from radioml.classes import FRAME_LENGTH
    from train.masks import init_masks
    from train.model import ModelConfig, build_vgg10

    torch.manual_seed(0)
    cfg = ModelConfig(4, 4, 4, conv_filters=filters, dense_units=16 if tiny else 128)
    model = init_masks(build_vgg10(cfg)).train()
    if state == "after":  # a loaded state dict ends Brevitas' statistics collection, as in any fine-tuning
        F.cross_entropy(model(torch.randn(2, 2, FRAME_LENGTH)), torch.tensor([0, 1])).backward()
        model.zero_grad(set_to_none=True)
        model.load_state_dict(model.state_dict())
    return model.to(device)


def cost_preflight() -> None:
    """Score a tiny model's inference cost, as every training epoch does, before any timing or training.

    Every epoch ends with Brevitas' QONNX export and qonnx's inference cost (onnxruntime): a GPU image
    with another onnx (IR 14 under onnxruntime's 13) or without onnxoptimizer fails there, after the
    first epoch's work. Fail here instead, in seconds, saying which wheels to bring."""
    from train.cost import model_cost
    from train.masks import init_masks
    from train.model import ModelConfig, build_vgg10

    try:
        model_cost(init_masks(build_vgg10(ModelConfig(4, 4, 4, conv_filters=4, dense_units=8))).eval())
    except Exception as e:  # noqa: BLE001 - any failure here is the environment's: say so in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RuntimeError(f"the per-epoch inference cost fails in this environment ({first[:200]}); install "
                           "requirements.txt's onnx, onnxruntime, onnxoptimizer and qonnx pins") from None


def measure(filters: int, state: str, speed, device, batch: int, warmup: int, steps: int, tiny: bool) -> dict:
    """frames/s of `steps` training steps after `warmup` (compilation included there)."""
    from radioml.classes import CLASSES, FRAME_LENGTH
    from train.speed import Step

    model = _model(filters, state, device, tiny)
    step = Step(model, speed, device)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.randn(batch, 2, FRAME_LENGTH, device=device)
    y = torch.randint(0, len(CLASSES), (batch,), device=device)

    def run(k):
        for _ in range(k):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(step(x).float(), y).backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    t = time.perf_counter()
    run(warmup)
    warm = time.perf_counter() - t
    t = time.perf_counter()
    run(steps)
    dt = time.perf_counter() - t
    return {"filters": filters, "state": state, "step": step.label, "batch": batch,
            "frames_per_s": round(steps * batch / dt, 1), "warmup_s": round(warm, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto (a GPU if there is one), cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=1024, help="training batch (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first, compilation included (default: %(default)s)")
    p.add_argument("--steps", type=int, default=30, help="timed steps per configuration (default: %(default)s)")
    p.add_argument("--data", default=None, help="RadioML-layout HDF5 file for part 2's ladder (needed unless --no-train)")
    p.add_argument("--sandbox", type=Path, default=SANDBOX, help="the sandbox VGG10 every rung starts from "
                                                                  "(default: ../shared/reference/...)")
    p.add_argument("--epochs", type=int, default=40, help="epoch cap of each rung (default: %(default)s; "
                                                          "each stops earlier at its plateau)")
    p.add_argument("--out", default="runs/gpu", help="directory of the reference runs and gpu_train.json (default: %(default)s)")
    p.add_argument("--no-train", action="store_true", help="part 1 only (frames/s)")
    p.add_argument("--widths", default="64,32", help="conv filters of the timed models, comma-separated "
                                                    "(default: %(default)s)")
    p.add_argument("--states", default="stats,after", help="comma-separated: stats (statistics phase), after "
                                                          "(fine-tuning) (default: %(default)s)")
    p.add_argument("--tiny", action="store_true", help="8- and 4-filter models, batch 8, 1+1 steps; an 8-filter ladder "
                                                       "rung of at most 2 epochs: a CPU check")
    a = p.parse_args(argv)

    from train.speed import SpeedConfig, bf16_supported, cpu_flags

    try:
        device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                              ("cpu" if a.device == "auto" else a.device))
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {a.device}: this PyTorch has no CUDA device; use --device cpu")
        if not a.no_train and not (a.data and Path(a.data).is_file()):
            raise ValueError(f"--data {a.data}: no such file (part 2 trains the ladder on it; --no-train skips it)")
        if not a.no_train and not a.sandbox.is_file():
            raise ValueError(f"--sandbox {a.sandbox}: no such file (every rung starts from it)")
        cost_preflight()
    except (RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.tiny:
        a.batch_size, a.warmup, a.steps, a.epochs = 8, 1, 1, 2
    widths = (8, 4) if a.tiny else tuple(int(w) for w in a.widths.split(","))
    states = [st for st in a.states.split(",") if st]
    if not set(states) <= {"stats", "after"} or not widths or min(widths) < 1:
        print(f"error: --widths {a.widths!r} / --states {a.states!r}: filter counts >= 1, states stats or after",
              file=sys.stderr)
        return 2
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_flags()
    print(f"device {device} ({gpu}); bf16 {'yes' if bf16_supported(device) else 'no'}; batch {a.batch_size}", flush=True)
    configs = [("eager fp32", SpeedConfig(precision="fp32", compile="false", fused=False)),
               ("fused fp32", SpeedConfig(precision="fp32", compile="false")),
               ("fused auto", SpeedConfig(precision="auto", compile="false"))]
    if device.type == "cuda":
        configs.append(("fused auto compiled", SpeedConfig(precision="auto", compile="true")))
    rows = []
    for filters in widths:
        for state in states:
            for name, speed in configs:
                r = measure(filters, state, speed, device, a.batch_size, a.warmup, a.steps, a.tiny)
                r["config"] = name
                rows.append(r)
                print(f"  {filters:>3} filters  {state:<6} {name:<20} {r['frames_per_s']:>10,.0f} frames/s "
                      f"({r['step']}; warm-up {r['warmup_s']} s)", flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"device": str(device), "name": gpu, "rows": rows, "runs": []}
    if not a.no_train:
        result["runs"] = train_ladder(a, device, out, (8,) if a.tiny else (64, 32, 16, 24, 48))
    (out / "gpu_train.json").write_text(json.dumps(result, indent=2))
    print(f"-> {out / 'gpu_train.json'}")
    return 0


GPU_LR = 4e-3  # Adam at batch 1024: the CPU recipe's 1e-3 at batch 64 scaled by sqrt(1024 / 64)


def train_ladder(a, device, out: Path, widths) -> list[dict]:
    """The dense width ladder (`python -m train.ladder`'s recipe at batch --batch-size) under OUT/ladder."""
    import dataclasses

    from train.ladder import Recipe, run_ladder

    recipe = dataclasses.replace(Recipe(), batch_size=a.batch_size, lr=GPU_LR if a.batch_size >= 512 else Recipe().lr,
                                 max_epochs=a.epochs)
    recs = []
    for filters in widths:
        t = time.perf_counter()
        (run_dir,) = run_ladder(a.data, out / "ladder", [filters], recipe, a.sandbox, 1 if a.tiny else 0, str(device))
        m = json.loads((run_dir / "metrics.json").read_text())
        rec = {"filters": filters, "run_dir": str(run_dir), "epochs": m["epochs"], "test_accuracy": m["accuracy"],
               "stop_reason": m["stop_reason"], "seconds": round(time.perf_counter() - t, 1)}
        print(f"  ladder {filters} filters: test accuracy {m['accuracy']:.4f} after {m['epochs']} epochs "
              f"({m['stop_reason']}), {rec['seconds']} s -> {run_dir}", flush=True)
        recs.append(rec)
    return recs


if __name__ == "__main__":
    sys.exit(main())
