"""Training-split batch iteration: our block-shuffled reader vs the challenge sandbox's way.

The sandbox wraps the HDF5 X dataset in a torch Dataset and draws batches of 1024
through a SubsetRandomSampler: one h5py read per frame. Ours shuffles runs of
neighbouring frames through a bounded buffer (radioml.batches). Each side runs in
its own process so peak RSS is its own. One generated file, one run:

    python -m benchmarks.reader_vs_sandbox [--frames-per-snr 128] [--sandbox-batches 20]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

OURS = """
import json, resource, sys, time
from radioml.dataset import RadioMLFile
from radioml.batches import iter_batches, prefetch
ds = RadioMLFile(sys.argv[1]); idx = ds.split().train
t = time.perf_counter(); n = 0
for b in iter_batches(ds, idx, 1024, shuffle=True, seed=0):
    n += len(b.y)
dt = time.perf_counter() - t
print(json.dumps({"frames": n, "seconds": dt, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

SANDBOX = """
import json, resource, sys, time
import h5py, numpy as np, torch
from torch.utils.data import Dataset, DataLoader
from torch.utils.data.sampler import SubsetRandomSampler
from radioml.split import challenge_split

class radioml_18_dataset(Dataset):  # as in the ITU-ML5G-PS-007 sandbox notebook
    def __init__(self, path):
        h5 = h5py.File(path, "r")
        self.data = h5["X"]
        self.mod = np.argmax(h5["Y"], axis=1)
        self.snr = h5["Z"][:, 0]
        self.len = self.data.shape[0]
    def __getitem__(self, idx):
        return self.data[idx].transpose(), self.mod[idx], self.snr[idx]
    def __len__(self):
        return self.len

ds = radioml_18_dataset(sys.argv[1])
block = ds.len // (24 * 26)
train, _ = challenge_split(24, 26, block)
torch.manual_seed(0)
loader = DataLoader(ds, batch_size=1024, sampler=SubsetRandomSampler(train.ravel().tolist()))
limit = int(sys.argv[2]); n = 0
t = time.perf_counter()
for i, (x, y, z) in enumerate(loader):
    n += len(y)
    if i + 1 >= limit:
        break
dt = time.perf_counter() - t
print(json.dumps({"frames": n, "seconds": dt, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _run(code: str, *args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--file", help="an existing RadioML-layout file (default: generate one)")
    p.add_argument("--frames-per-snr", type=int, default=128, help="size of the generated file (default: %(default)s)")
    p.add_argument("--sandbox-batches", type=int, default=20, help="batches timed for the sandbox way (default: %(default)s)")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        path = a.file
        if path is None:
            from radioml.synthetic import write_synthetic

            path = write_synthetic(Path(d) / "bench.hdf5", a.frames_per_snr, seed=0, progress=False)
        size = os.path.getsize(path) / 1e6
        res = {}
        for state in ("cold", "warm"):
            for name, code, args in (("ours", OURS, ()), ("sandbox", SANDBOX, (a.sandbox_batches,))):
                _cache(path, state)
                res[state, name] = _run(code, path, *args)
    print(f"file: {path} ({size:.0f} MB); cold = evicted from the page cache first (as a 21 GB file is)")
    print(f"{'page cache':<12}{'reader':<32}{'frames':>9}{'frames/s':>12}{'peak RSS MB':>13}")
    for state in ("cold", "warm"):
        rates = {}
        for name, label in (("ours", "ours (block shuffle, 1 epoch)"), ("sandbox", "sandbox (per-frame h5py)")):
            r = res[state, name]
            rates[name] = r["frames"] / r["seconds"]
            print(f"{state:<12}{label:<32}{r['frames']:>9}{rates[name]:>12,.0f}{r['peak_rss_mb']:>13.0f}")
        print(f"{'':<12}speed-up {rates['ours'] / rates['sandbox']:.1f}x")
    return 0


def _cache(path, state: str) -> None:
    """Evict the file from the page cache (cold) or read it once (warm)."""
    with open(path, "rb") as fh:
        if state == "cold":
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        else:
            while fh.read(1 << 24):
                pass


if __name__ == "__main__":
    sys.exit(main())
