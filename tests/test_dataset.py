"""The torch-free reader: layout checks, frame access paths, the cache, bad input."""
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from radioml.batches import iter_batches, prefetch
from radioml.classes import SNRS_DB
from radioml.dataset import DatasetError, RadioMLFile, build_cache

from .conftest import write_layout


def test_reads_generated_file(small_file):
    with RadioMLFile(small_file) as ds:
        assert ds.layout.block == 8 and ds.n_frames == 24 * 26 * 8
        assert ds.frames.kind == "direct"
        np.testing.assert_array_equal(np.bincount(ds.labels), [26 * 8] * 24)
        assert sorted(set(ds.snrs.tolist())) == list(SNRS_DB)
        idx = np.array([4000, 3, 17, 3])
        with h5py.File(small_file) as f:
            np.testing.assert_array_equal(ds.read(idx), f["X"][:][idx])


def test_split_sizes(small_file):
    with RadioMLFile(small_file) as ds:
        sp = ds.split(val_fraction=0.2)
    assert len(sp.test) == 624 * 1 and len(sp.val) == 624 * 2 and len(sp.train) == 624 * 5


def test_hdf5_path_and_cache_agree(small_file, tmp_path):
    chunked = tmp_path / "chunked.hdf5"
    with h5py.File(small_file) as src, h5py.File(chunked, "w") as dst:
        dst.create_dataset("X", data=src["X"][:], chunks=(64, 1024, 2), compression="gzip", compression_opts=1)
        dst.create_dataset("Y", data=src["Y"][:])
        dst.create_dataset("Z", data=src["Z"][:])
        ref = src["X"][:]
    idx = np.sort(np.random.default_rng(0).choice(len(ref), 700, replace=False))
    with RadioMLFile(chunked) as ds:
        assert ds.frames.kind == "hdf5"
        np.testing.assert_array_equal(ds.frames.read(idx), ref[idx])
    with RadioMLFile(chunked, cache_dir=tmp_path / "cache") as ds:
        assert ds.frames.kind == "direct"
        np.testing.assert_array_equal(ds.frames.read(idx), ref[idx])
        cache = build_cache(ds, tmp_path / "cache")
        mtime = cache.stat().st_mtime_ns
    with RadioMLFile(chunked, cache_dir=tmp_path / "cache"):
        assert cache.stat().st_mtime_ns == mtime  # reused, not rebuilt


def test_batch_order_is_the_order_iter_batches_reads(small_file):
    """Resident training data (train/speed.py) follows batch_order: the same batches as the file reader."""
    from radioml.batches import batch_order

    with RadioMLFile(small_file) as ds:
        train = ds.split().train
        for kw in (dict(shuffle=True, seed=3, epoch=1, buffer_frames=1024), dict(shuffle=True, buffer_frames=100),
                   dict(shuffle=True, buffer_frames=1000, drop_last=True), dict(shuffle=False, buffer_frames=512),
                   dict(shuffle=False, drop_last=True)):
            want = [b.idx for b in iter_batches(ds, train, 96, **kw)]
            got = list(batch_order(train, 96, **kw))
            assert len(got) == len(want) >= 3, kw
            for a, b in zip(got, want):
                np.testing.assert_array_equal(a, b)


def test_a_rank_reads_only_its_rows_of_each_global_batch(small_file):
    """Under torchrun each rank gets rows rank::world of the batches one process trains on, and reads from the
    file only those frames (no rank reads the whole epoch)."""
    from radioml.batches import iter_rank_batches

    with RadioMLFile(small_file) as ds:
        train = ds.split().train
        real_read, read = ds.frames.read, []

        def counting_read(idx, out=None):
            read.append(np.asarray(idx).copy())
            return real_read(idx, out)

        for kw in (dict(shuffle=True, seed=3, epoch=1, buffer_frames=1000), dict(shuffle=False, buffer_frames=512)):
            whole = list(iter_batches(ds, train, 96, **kw))
            for rank in (0, 1, 2):
                read.clear()
                ds.frames.read = counting_read
                shares = list(iter_rank_batches(ds, train, 96, rank, 3, **kw))
                ds.frames.read = real_read
                assert len(shares) == len(whole) >= 3, kw
                for share, b in zip(shares, whole):
                    np.testing.assert_array_equal(share.idx, b.idx[rank::3])
                    np.testing.assert_array_equal(share.x, b.x[rank::3])
                    np.testing.assert_array_equal(share.y, b.y[rank::3])
                assert np.array_equal(np.sort(np.concatenate(read)), np.sort(np.concatenate([s.idx for s in shares])))
        with pytest.raises(ValueError, match="rank 3 is not in 0..2"):
            next(iter_rank_batches(ds, train, 96, 3, 3))


def test_shuffled_batches_cover_split_once_and_are_deterministic(small_file):
    with RadioMLFile(small_file) as ds:
        sp = ds.split()
        runs = [[b.idx for b in iter_batches(ds, sp.train, 256, shuffle=True, seed=3, epoch=e, buffer_frames=1024)]
                for e in (0, 0, 1)]
        got = np.concatenate(runs[0])
        np.testing.assert_array_equal(np.sort(got), sp.train)
        assert all(len(i) == 256 for i in runs[0][:-1])
        np.testing.assert_array_equal(got, np.concatenate(runs[1]))
        assert not np.array_equal(got, np.concatenate(runs[2]))
        # a batch mixes many classes, not one (class, SNR) block
        b = next(iter_batches(ds, sp.train, 256, shuffle=True, seed=3, buffer_frames=1024))
        assert len(set(b.y.tolist())) >= 12
        np.testing.assert_array_equal(b.y, ds.labels[b.idx])
        np.testing.assert_array_equal(b.x, ds.read(b.idx).transpose(0, 2, 1))


def test_prefetch_propagates_errors():
    def gen():
        yield 1
        raise RuntimeError("boom")

    it = prefetch(gen(), 2)
    assert next(it) == 1
    with pytest.raises(RuntimeError, match="boom"):
        next(it)


def _broken(tmp_path, name, mutate=None, **kw):
    return write_layout(tmp_path / name, mutate=mutate, **kw)


def _bad_cases(tmp_path):
    def drop(key):
        return lambda a: a.__setitem__(key, None)

    def not_one_hot(a):
        a["Y"][5, :] = 0

    def two_hot(a):
        a["Y"][7, 3] = 1

    def off_grid(a):
        a["Z"][9, 0] = 3

    def out_of_order(a):
        a["Y"][[0, -1]] = a["Y"][[-1, 0]]

    def short_x(a):
        a["X"] = a["X"][:, :512]

    def z_flat(a):
        a["Z"] = a["Z"][:, 0]

    notes = tmp_path / "notes.hdf5"
    notes.write_text("this is not HDF5")
    trunc = _broken(tmp_path, "trunc.hdf5")
    with open(trunc, "r+b") as fh:
        fh.truncate(os.path.getsize(trunc) // 2)
    uneven = tmp_path / "uneven.hdf5"
    with h5py.File(uneven, "w") as f:
        f["X"] = np.zeros((10, 1024, 2), np.float32)
        f["Y"] = np.eye(24)[np.zeros(10, int)]
        f["Z"] = np.zeros((10, 1), int)
    return [
        (tmp_path / "missing.hdf5", "no such file"),
        (notes, "not a readable HDF5 file"),
        (trunc, "truncated or corrupt"),
        (_broken(tmp_path, "noy.hdf5", drop("Y")), "missing dataset 'Y'"),
        (_broken(tmp_path, "short.hdf5", short_x), "X has shape"),
        (_broken(tmp_path, "f64.hdf5", x_dtype="<f8"), "X has dtype float64"),
        (_broken(tmp_path, "zflat.hdf5", z_flat), "Z has shape"),
        (_broken(tmp_path, "zero.hdf5", not_one_hot), "Y row 5 is not one-hot"),
        (_broken(tmp_path, "two.hdf5", two_hot), "Y row 7 is not one-hot"),
        (_broken(tmp_path, "grid.hdf5", off_grid), "Z row 9 is 3 dB"),
        (_broken(tmp_path, "order.hdf5", out_of_order), "not ordered by class, then SNR"),
        (uneven, "not a positive multiple"),
    ]


def test_bad_input_gives_one_clear_error_and_writes_nothing(tmp_path):
    cases = _bad_cases(tmp_path)
    before = sorted(os.listdir(tmp_path))
    for path, problem in cases:
        with pytest.raises(DatasetError) as e:
            RadioMLFile(path, cache_dir=tmp_path / "cache")
        msg = str(e.value)
        assert msg.startswith(str(path)) and problem in msg, msg
        assert "\n" not in msg
    assert sorted(os.listdir(tmp_path)) == before  # no cache dir, no temp files


@pytest.mark.slow
def test_batch_iterator_memory_is_bounded(tmp_path):
    """Iterating a 650 MB file in shuffled batches of 1024 stays far below the file size in RSS."""
    from radioml.synthetic import write_synthetic

    path = write_synthetic(tmp_path / "big.hdf5", frames_per_snr=128, seed=5, progress=False)
    code = (
        "import resource, numpy as np\n"
        "from radioml.dataset import RadioMLFile\n"
        "from radioml.batches import iter_batches\n"
        f"ds = RadioMLFile({str(path)!r})\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "n = sum(len(b.y) for b in iter_batches(ds, ds.split().train, 1024, shuffle=True, buffer_frames=8192))\n"
        "print(n, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()}).stdout.split()
    frames, grown_mb = int(out[0]), int(out[1])
    assert frames == 24 * 26 * (128 - 13)
    assert os.path.getsize(path) > 600e6
    assert grown_mb < 250, f"RSS grew by {grown_mb} MB"


@pytest.mark.slow
def test_real_size_file_split_matches_sandbox(tmp_path):
    """A file with the real 4096 frames per block (2.5M frames): X chunked and never written
    (so a few MB on disk), Y and Z compressed. The reader checks it without loading X and
    its split is exactly the sandbox's."""
    from .test_split import sandbox_split

    n = 24 * 26 * 4096
    path = tmp_path / "real_size.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", (n, 1024, 2), dtype="<f4", chunks=(256, 1024, 2))
        y = np.zeros((n, 24), np.int64)
        y[np.arange(n), np.arange(n) // (26 * 4096)] = 1
        f.create_dataset("Y", data=y, chunks=(65536, 24), compression="gzip", compression_opts=1)
        z = np.tile(np.repeat(np.array(SNRS_DB, np.int64), 4096), 24)[:, None]
        f.create_dataset("Z", data=z, chunks=(65536, 1), compression="gzip", compression_opts=1)
        del y
    assert os.path.getsize(path) < 50e6
    with RadioMLFile(path) as ds:
        assert ds.layout.block == 4096 and ds.frames.kind == "hdf5"
        sp = ds.split()
        ref_train, ref_test = sandbox_split(4096)
        np.testing.assert_array_equal(sp.test, np.sort(ref_test))
        np.testing.assert_array_equal(sp.train, np.sort(ref_train))
        assert len(sp.test) == 624 * 410 and len(sp.train) == 624 * 3686
        assert ds.read([n - 1, 0]).shape == (2, 1024, 2)
