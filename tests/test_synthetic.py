"""The synthetic generator: layout, determinism, coverage, exact SNR, unit power."""
import h5py
import numpy as np
import pytest

from radioml.classes import CLASSES, FRAME_LENGTH, SNRS_DB
from radioml.dataset import RadioMLFile
from radioml.synthetic import constellations, generate_frames, main, write_synthetic


def test_layout_matches_real_file(small_file):
    with h5py.File(small_file) as f:
        assert f["X"].shape == (24 * 26 * 8, FRAME_LENGTH, 2) and f["X"].dtype == np.float32
        assert f["Y"].shape == (24 * 26 * 8, 24) and f["Y"].dtype == np.int64
        assert f["Z"].shape == (24 * 26 * 8, 1) and f["Z"].dtype == np.int64
    RadioMLFile(small_file).close()  # passes every layout check


def test_deterministic_for_a_seed(tmp_path):
    a = write_synthetic(tmp_path / "a.hdf5", 2, seed=7, progress=False)
    b = write_synthetic(tmp_path / "b.hdf5", 2, seed=7, progress=False)
    c = write_synthetic(tmp_path / "c.hdf5", 2, seed=8, progress=False)
    with h5py.File(a) as fa, h5py.File(b) as fb, h5py.File(c) as fc:
        np.testing.assert_array_equal(fa["X"][:], fb["X"][:])
        assert not np.array_equal(fa["X"][:], fc["X"][:])


@pytest.mark.parametrize("name", CLASSES)
def test_every_class_exact_snr_and_unit_power(name):
    snrs = np.array(SNRS_DB, float).repeat(3)
    y, s, w = generate_frames(name, snrs, np.random.default_rng(0), components=True)
    assert y.shape == (len(snrs), FRAME_LENGTH) and y.dtype == np.complex64
    measured = 10 * np.log10(np.mean(np.abs(s) ** 2, 1) / np.mean(np.abs(w) ** 2, 1))
    assert np.abs(measured - snrs).mean() < 0.1
    np.testing.assert_allclose(np.mean(np.abs(y) ** 2, 1), 1.0, rtol=1e-4)
    assert np.isfinite(y).all()


def test_classes_differ_at_high_snr():
    """Each class's clean frames have a distinct amplitude signature (not all the same signal)."""
    rng = np.random.default_rng(1)
    stats = []
    for name in CLASSES:
        y = generate_frames(name, np.full(64, 30.0), rng)
        a = np.abs(y)
        stats.append((np.mean(a ** 4) / np.mean(a ** 2) ** 2).round(2))  # kurtosis-like
    assert len(set(stats)) >= 8


def test_apsk_rings_follow_dvb_s2x():
    c = constellations()
    r = np.unique(np.round(np.abs(c["64APSK"]) / np.abs(c["64APSK"]).min(), 3))
    np.testing.assert_allclose(r, [1, 2.2, 3.6, 5.2], atol=1e-3)
    r = np.unique(np.round(np.abs(c["128APSK"]) / np.abs(c["128APSK"]).min(), 3))
    np.testing.assert_allclose(r, [1, 1.715, 2.118, 2.681, 2.75, 3.819], atol=1e-3)
    for name, pts in c.items():
        assert np.mean(np.abs(pts) ** 2) == pytest.approx(1.0), name
    assert {len(c[k]) for k in ("16QAM", "32QAM", "64QAM", "128QAM", "256QAM")} == {16, 32, 64, 128, 256}


def test_cli_writes_file_and_rejects_bad_count(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "x.hdf5"), "--frames-per-snr", "1", "--quiet"]) == 0
    assert (tmp_path / "x.hdf5").exists()
    assert main(["--out", str(tmp_path / "y.hdf5"), "--frames-per-snr", "0", "--quiet"]) == 2
    assert "frames_per_snr must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "y.hdf5").exists()
