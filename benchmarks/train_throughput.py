"""Training throughput of the 4-bit VGG10 on this machine, and the share of step time spent waiting for data.

Runs real training steps (Adam, cross-entropy, batch 1024 by default) fed by the
same prefetching reader as `python -m train`, after the Brevitas statistics-
collection warm-up (its first 30 steps use a slow percentile), and reports
frames/s with the time the training thread waited for the next batch.

    python -m benchmarks.train_throughput [--batches 6] [--batch-size 1024]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--file", help="RadioML-layout file (default: generate a small one)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--batches", type=int, default=6, help="timed batches (default: %(default)s)")
    p.add_argument("--bits", type=int, default=4)
    a = p.parse_args(argv)

    from radioml.batches import iter_batches, prefetch
    from radioml.classes import FRAME_LENGTH
    from radioml.dataset import RadioMLFile
    from train.masks import init_masks
    from train.model import ModelConfig, build_vgg10

    with tempfile.TemporaryDirectory() as d:
        path = a.file
        if path is None:
            from radioml.synthetic import write_synthetic

            path = write_synthetic(Path(d) / "bench.hdf5", 32, seed=0, progress=False)
        ds = RadioMLFile(path)
        idx = ds.split().train
        torch.manual_seed(0)
        model = init_masks(build_vgg10(ModelConfig(a.bits, a.bits, a.bits))).train()
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        warm = torch.randn(32, 2, FRAME_LENGTH), torch.randint(0, 24, (32,))
        for _ in range(31):  # finish Brevitas' activation-statistics collection
            opt.zero_grad()
            F.cross_entropy(model(warm[0]), warm[1]).backward()
            opt.step()
        wait = compute = 0.0
        frames = 0
        epoch = 0
        t_all = time.perf_counter()
        while frames < a.batches * a.batch_size:
            it = prefetch(iter_batches(ds, idx, a.batch_size, shuffle=True, epoch=epoch, drop_last=True), 3)
            t = time.perf_counter()
            for b in it:
                t1 = time.perf_counter()
                wait += t1 - t
                x, y = torch.from_numpy(b.x), torch.from_numpy(b.y)
                opt.zero_grad()
                F.cross_entropy(model(x), y).backward()
                opt.step()
                frames += len(y)
                t = time.perf_counter()
                compute += t - t1
                if frames >= a.batches * a.batch_size:
                    break
            epoch += 1
        total = time.perf_counter() - t_all
        ds.close()
    print(f"4-bit VGG10 training on {torch.get_num_threads()} threads, batch {a.batch_size}: "
          f"{frames / total:,.0f} frames/s ({frames} frames in {total:.1f} s)")
    print(f"data wait: {wait:.2f} s = {100 * wait / (wait + compute):.1f}% of step time "
          f"(compute {compute:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
