"""`python -m driver.validate`: accuracy and throughput of the accelerator on RadioML test frames.

On the board: `python -m driver.validate --bundle DIR --data GOLD_XYZ_OSC.0001_1024.hdf5`
(DIR holds driver_io.json and the bitfile). Without a board: add `--emulate --export EXPORT_DIR`
to run the same code path with the DMA transfer emulated by the exported golden model.
Reports accuracy on the test split (overall, at 30 dB as finn-examples publishes, per SNR,
per class, confusion matrix) and frames/s with and without host-side packing.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from radioml.atomic import write_json
from radioml.batches import iter_batches
from radioml.cli import run_main
from radioml.dataset import DatasetError, RadioMLFile
from radioml.metrics import summarize

from .overlay import AMCOverlay, DriverError, load_io


def _progress(done: int, total: int, every: list) -> None:
    """A line on stderr at each further tenth of the frames (no tqdm on a PYNQ image)."""
    if done >= every[0] or done == total:
        print(f"  {done:,}/{total:,} frames", file=sys.stderr, flush=True)
        every[0] = done + max(1, total // 10)


def validate(bundle, data, batch_size=1024, emulate=False, export_dir=None, snrs=None, limit=None,
             progress: bool = False) -> dict:
    io = load_io(bundle)
    if emulate:
        from .emulate import EmulatedBackend

        if export_dir is None and io.export_dir:  # written relative to the bundle
            export_dir = Path(bundle) / io.export_dir
        if export_dir is None:
            raise DriverError(f"{Path(bundle) / 'driver_io.json'}: names no export directory; pass --export DIR")
        backend = EmulatedBackend(export_dir, io)
    else:
        backend = None
    if batch_size < 1:
        raise DriverError(f"--batch-size must be >= 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise DriverError(f"--limit must be >= 1, got {limit}")
    with RadioMLFile(data) as ds:
        idx = ds.split().test
        if snrs:
            absent = sorted(set(snrs) - set(np.unique(ds.snrs[idx]).tolist()))
            if absent:
                raise DriverError(f"{data}: no test frames at --snr {', '.join(map(str, absent))} dB (its SNRs: "
                                  f"{int(ds.snrs.min())}..{int(ds.snrs.max())} dB, step 2)")
            idx = idx[np.isin(ds.snrs[idx], snrs)]
        if limit:
            idx = idx[np.linspace(0, len(idx) - 1, min(limit, len(idx))).round().astype(int)]
        batch_size = min(batch_size, len(idx))
        acc = AMCOverlay(bundle, batch_size, backend=backend)
        ys, ps, ss, t_dev, t_all = [], [], [], 0.0, 0.0
        next_report = [0]
        # one batch in memory at a time (a Pynq-Z2 has 512 MB of DRAM): peak memory scales with batch_size
        for b in iter_batches(ds, idx, batch_size, buffer_frames=batch_size):
            t0 = time.perf_counter()
            acc.ibuf[:] = acc.pack_input(acc.fold_input(acc.full_batch(acc.quantize(b.x))))
            t1 = time.perf_counter()
            acc.execute_on_buffers()
            t2 = time.perf_counter()
            out = acc.unfold_output(acc.unpack_output(np.asarray(acc.obuf)))[: len(b.y)]
            t_all += time.perf_counter() - t0
            t_dev += t2 - t1
            ys.append(b.y)
            ps.append(acc.top1(out))
            ss.append(b.snr)
            if progress:
                _progress(sum(map(len, ys)), len(idx), next_report)
    y, p, s = np.concatenate(ys), np.concatenate(ps), np.concatenate(ss)
    m = summarize(y, p, s)
    m.update({
        "accuracy_at_30dB": m["accuracy_per_snr"].get("30"), "emulated": bool(emulate),
        "batch_size": batch_size, "output": io.output,
        "output_bytes_per_frame": int(np.prod(io.io_shape_dict["oshape_packed"][0][1:])),
        "frames_per_s_accelerator": len(y) / t_dev,
        "frames_per_s_with_host_packing": len(y) / t_all, "predictions": p.tolist(), "frame_indices": idx.tolist(),
    })
    return m


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m driver.validate", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, help="directory with driver_io.json (and the bitfile on a board)")
    p.add_argument("--data", required=True, help="RadioML 2018.01A-layout HDF5 file")
    p.add_argument("--batch-size", type=int, default=1024,
                   help="frames per DMA transfer (the buffers hold one batch; peak memory grows with it) "
                        "(default: %(default)s)")
    p.add_argument("--snr", type=int, nargs="*", help="only these SNRs (dB)")
    p.add_argument("--limit", type=int, help="at most this many test frames, spread over the split")
    p.add_argument("--emulate", action="store_true", help="no board: emulate the accelerator with the golden model")
    p.add_argument("--export", dest="export_dir", help="export directory for --emulate (default: the bundle's)")
    p.add_argument("--out", help="write the results JSON here")
    a = p.parse_args(argv)
    from radioml.golden_session import MissingPackage

    def work():
        if a.out:
            check_writable(Path(a.out))
        _report(validate(a.bundle, a.data, a.batch_size, a.emulate, a.export_dir, a.snr, a.limit, progress=True), a.out)

    return run_main(work, (DriverError, DatasetError, MissingPackage, ValueError, OSError))


def check_writable(out: Path) -> None:
    """--out is checked before the run, not after it: a results file that cannot be written loses the run."""
    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise DriverError(f"--out {out}: is a directory; name a file")
    if not folder.is_dir():
        raise DriverError(f"--out {out}: {folder} is not a directory")
    try:  # a real write: permissions, read-only mounts and root alike
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.probe", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise DriverError(f"--out {out}: {folder} is not writable ({e.strerror})") from None


def _report(m: dict, out) -> None:
    at30 = m["accuracy_at_30dB"]
    print(f"{'emulated accelerator' if m['emulated'] else 'accelerator'}: {m['frames']} test frames, "
          f"accuracy {m['accuracy']:.4f}, at 30 dB {at30 if at30 is None else f'{at30:.4f}'}")
    print(f"throughput: {m['frames_per_s_accelerator']:,.0f} frames/s accelerator"
          f"{' (emulated: golden model on the CPU)' if m['emulated'] else ''}, "
          f"{m['frames_per_s_with_host_packing']:,.0f} frames/s with host quantise/pack/unpack")
    print(f"output: {'the top-1 class index' if m['output'] == 'class' else 'the class scores'}, "
          f"{m['output_bytes_per_frame']} byte{'s' if m['output_bytes_per_frame'] != 1 else ''} a frame")
    print("accuracy per SNR: " + ", ".join(f"{k}: {v:.2f}" for k, v in m["accuracy_per_snr"].items()))
    if out:
        write_json(out, m)


def console() -> None:
    """The `amc-validate` command of the board wheel (python -m driver.wheel)."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
