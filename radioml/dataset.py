"""Reading RadioML 2018.01A files (real or synthetic) without loading them whole.

The real file is 21 GB, so nothing here reads X in full: labels and SNRs (a few
MB) are read once and checked; frames are read on demand, as sorted index sets
grouped into contiguous spans. Three ways to reach the frames, fastest first:
  * the file's X is contiguous and uncompressed (the real file and ours are):
    read it in place with positional reads at its byte offset, no conversion;
  * a one-time cache (`build_cache`) converted from a chunked/compressed file to
    a .npy that is read the same way;
  * plain h5py slice reads.
Nothing is memory-mapped, so the resident set stays bounded by what one read
returns, whatever the file's size.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_path, write_json
from .classes import CLASSES, FRAME_LENGTH, SNRS_DB
from .cli import first_line
from .split import Split, make_split

_SCAN_ROWS = 65536  # rows of Y/Z checked at a time
_MAX_GAP = 64  # frames: read across gaps up to this long instead of seeking
_FRAME_BYTES = FRAME_LENGTH * 2 * 4


class DatasetError(ValueError):
    """A dataset file that is missing, unreadable or not in the RadioML 2018.01A layout."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = str(path), problem


# -- frame sources ----------------------------------------------------------------
class _RawFrames:
    """Frames as a raw little-endian float32 (N, 1024, 2) array at a byte offset of a file.

    Read with positional reads (os.preadv) straight into the output array, one call per
    run of consecutive frames: no memory map, so nothing but the returned array counts
    towards the process's resident memory, and reads from several threads are safe.
    """

    kind = "direct"

    def __init__(self, path: Path, offset: int, n: int):
        self.path, self.offset, self.n = path, offset, n
        self.fd = os.open(path, os.O_RDONLY)

    def read(self, idx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Frames at sorted `idx`, into `out` (reused by the batch iterator) or a new array."""
        if out is None or len(out) < len(idx):
            out = np.empty((len(idx), FRAME_LENGTH, 2), np.float32)
        out = out[:len(idx)]
        if not len(idx):
            return out
        mv = memoryview(out).cast("B")
        cuts = np.flatnonzero(np.diff(idx) != 1) + 1
        starts = np.concatenate([[0], cuts]).tolist()
        ends = np.concatenate([cuts, [len(idx)]]).tolist()
        first = idx[starts].tolist()
        for s, e, f in zip(starts, ends, first):
            want = (e - s) * _FRAME_BYTES
            got = os.preadv(self.fd, [mv[s * _FRAME_BYTES:e * _FRAME_BYTES]], self.offset + f * _FRAME_BYTES)
            if got != want:
                raise DatasetError(self.path, f"short read at frame {f}: truncated file?")
        return out

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class _H5Frames:
    """Frames through h5py, one slice read per span of nearby indices."""

    kind = "hdf5"

    def __init__(self, dset):
        self.dset = dset

    def read(self, idx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if out is None or len(out) < len(idx):
            out = np.empty((len(idx), FRAME_LENGTH, 2), np.float32)
        out = out[:len(idx)]
        if len(idx) == 0:
            return out
        cuts = np.flatnonzero(np.diff(idx) > _MAX_GAP) + 1
        pos = 0
        for seg in np.split(idx, cuts):
            a, b = int(seg[0]), int(seg[-1]) + 1
            out[pos:pos + len(seg)] = self.dset[a:b][seg - a]
            pos += len(seg)
        return out

    def close(self):
        self.dset.file.close()


# -- the dataset ----------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """Sizes of a RadioML-layout file."""

    n_frames: int
    block: int  # frames per (class, SNR)
    n_classes: int = len(CLASSES)
    n_snrs: int = len(SNRS_DB)


class RadioMLFile:
    """A checked RadioML 2018.01A-layout HDF5 file: labels and SNRs in memory, frames on demand.

    Raises DatasetError naming the file and the problem for anything that is
    not the layout: missing file or key, wrong shape or dtype, rows of Y that
    are not one-hot, SNRs off the -20..30 dB grid, frames out of class/SNR
    order, a truncated or corrupt file.
    """

    def __init__(self, path: str | os.PathLike, cache_dir: str | os.PathLike | None = None):
        try:
            import h5py
        except ImportError:
            raise DatasetError(path, "reading it needs h5py, which is not installed: on a PYNQ board run "
                                     "`sudo apt-get install python3-h5py` (or `sudo python3 -m pip install h5py`)"
                               ) from None

        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetError(self.path, "no such file")
        try:
            f = h5py.File(self.path, "r")
        except OSError as e:
            raise DatasetError(self.path, f"not a readable HDF5 file, truncated or corrupt? ({first_line(e)})") from None
        try:
            self.layout, self.labels, self.snrs = _check(self.path, f)
            self.frames = self._frame_source(f, cache_dir)
        except BaseException:
            f.close()
            raise
        if self.frames.kind != "hdf5":
            f.close()

    @property
    def n_frames(self) -> int:
        return self.layout.n_frames

    def _frame_source(self, f, cache_dir):
        X = f["X"]
        offset = X.id.get_offset()
        if X.chunks is None and X.compression is None and X.dtype == np.dtype("<f4") and offset is not None:
            return _RawFrames(self.path, offset, self.n_frames)
        if cache_dir is not None:
            cache = build_cache(self, Path(cache_dir), f)
            return _RawFrames(cache, _npy_data_offset(cache), self.n_frames)
        return _H5Frames(X)

    def read(self, idx) -> np.ndarray:
        """Frames at the given indices as float32 (k, 1024, 2), in the order given."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_frames):
            raise IndexError(f"{self.path}: frame index out of range 0..{self.n_frames - 1}")
        order = np.argsort(idx, kind="stable")
        out = np.empty((idx.size, FRAME_LENGTH, 2), np.float32)
        out[order] = self.frames.read(idx[order])
        return out

    def split(self, min_train_snr: float | None = None, val_fraction: float = 0.0) -> Split:
        """The challenge's train/test split of this file (see radioml.split)."""
        L = self.layout
        return make_split(L.n_classes, L.n_snrs, L.block, np.array(SNRS_DB), min_train_snr, val_fraction)

    def close(self):
        self.frames.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _check(path: Path, f) -> tuple[Layout, np.ndarray, np.ndarray]:
    """Validate the layout; return it with per-frame class indices and SNRs."""
    for key in ("X", "Y", "Z"):
        if key not in f:
            raise DatasetError(path, f"missing dataset {key!r} (has: {', '.join(sorted(f.keys())) or 'nothing'})")
    X, Y, Z = f["X"], f["Y"], f["Z"]
    n = X.shape[0] if X.ndim else 0
    nc, ns = len(CLASSES), len(SNRS_DB)
    if X.ndim != 3 or X.shape[1:] != (FRAME_LENGTH, 2):
        raise DatasetError(path, f"X has shape {X.shape}, expected (N, {FRAME_LENGTH}, 2)")
    if X.dtype != np.float32:
        raise DatasetError(path, f"X has dtype {X.dtype}, expected float32")
    if Y.shape != (n, nc):
        raise DatasetError(path, f"Y has shape {Y.shape}, expected ({n}, {nc})")
    if Z.shape != (n, 1):
        raise DatasetError(path, f"Z has shape {Z.shape}, expected ({n}, 1)")
    for key, d in (("Y", Y), ("Z", Z)):
        if d.dtype.kind not in "iuf":
            raise DatasetError(path, f"{key} has dtype {d.dtype}, expected a numeric type")
    if n == 0 or n % (nc * ns):
        raise DatasetError(path, f"{n} frames is not a positive multiple of {nc} classes x {ns} SNRs")
    block = n // (nc * ns)
    labels = np.empty(n, np.int16)
    snrs = np.empty(n, np.int16)
    grid = np.array(SNRS_DB)
    try:
        for a in range(0, n, _SCAN_ROWS):
            y = Y[a:a + _SCAN_ROWS]
            bad = ~(((y == 0) | (y == 1)).all(axis=1) & (y.sum(axis=1) == 1))
            if bad.any():
                r = a + int(np.argmax(bad))
                raise DatasetError(path, f"Y row {r} is not one-hot: {np.asarray(Y[r]).tolist()}")
            labels[a:a + len(y)] = y.argmax(axis=1)
            z = Z[a:a + _SCAN_ROWS, 0]
            off = ~np.isin(z, grid)
            if off.any():
                r = a + int(np.argmax(off))
                raise DatasetError(path, f"Z row {r} is {z[r - a].item():g} dB, not on the -20..30 dB grid (step 2)")
            snrs[a:a + len(z)] = z
        X[n - 1]  # a truncated file fails here rather than mid-training
    except OSError as e:
        raise DatasetError(path, f"read failed, truncated or corrupt? ({first_line(e)})") from None
    rows = np.arange(n)
    want_cls = rows // (ns * block)
    want_snr = grid[(rows // block) % ns]
    wrong = (labels != want_cls) | (snrs != want_snr)
    if wrong.any():
        r = int(np.argmax(wrong))
        raise DatasetError(path, f"frames are not ordered by class, then SNR: row {r} is "
                                 f"{CLASSES[labels[r]]} at {snrs[r]} dB, expected "
                                 f"{CLASSES[want_cls[r]]} at {want_snr[r]} dB")
    return Layout(n, block), labels, snrs


# -- one-time cache for chunked or compressed files ---------------------------------
def _npy_data_offset(path: Path) -> int:
    mm = np.load(path, mmap_mode="r")
    try:
        return int(mm.offset)
    finally:
        del mm


def build_cache(ds: RadioMLFile, cache_dir: Path, h5file=None, progress: bool = True) -> Path:
    """Convert X to `<cache_dir>/<name>.X.npy` once (streamed, atomic); reuse it after.

    A stamp of the source's size and mtime is kept beside it, so a changed
    source rebuilds the cache instead of silently reading stale frames.
    """
    import h5py
    from tqdm import tqdm

    cache_dir.mkdir(parents=True, exist_ok=True)
    out = cache_dir / f"{ds.path.stem}.X.npy"
    stamp_path = out.with_suffix(".json")
    st = ds.path.stat()
    stamp = {"source": str(ds.path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
             "n_frames": ds.n_frames}
    if out.exists() and stamp_path.exists():
        try:
            if json.loads(stamp_path.read_text()) == stamp:
                return out
        except ValueError:
            pass
    own = h5file is None
    f = h5py.File(ds.path, "r") if own else h5file
    try:
        X = f["X"]
        with atomic_path(out) as tmp:
            mm = np.lib.format.open_memmap(tmp, mode="w+", dtype="<f4", shape=X.shape)
            step = 16384
            for a in tqdm(range(0, X.shape[0], step), desc=f"cache {ds.path.name}", unit="chunk",
                          disable=not progress):
                mm[a:a + step] = X[a:a + step]
            mm.flush()
            del mm
        write_json(stamp_path, stamp)
    finally:
        if own:
            f.close()
    return out
