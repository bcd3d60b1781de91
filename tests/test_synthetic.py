"""The synthetic generator: layout, determinism, profiles, and the calibrated profile's measurable physics."""
import dataclasses

import h5py
import numpy as np
import pytest

from radioml.classes import CLASSES, FRAME_LENGTH, SNRS_DB
from radioml.dataset import RadioMLFile
from radioml.synthetic import (CALIBRATED_V1, HARSH, PROFILES, SynthConfig, constellations, generate_frames, main,
                               write_synthetic)

CAL = SynthConfig()


def test_layout_matches_real_file(small_file):
    with h5py.File(small_file) as f:
        assert f["X"].shape == (24 * 26 * 8, FRAME_LENGTH, 2) and f["X"].dtype == np.float32
        assert f["Y"].shape == (24 * 26 * 8, 24) and f["Y"].dtype == np.int64
        assert f["Z"].shape == (24 * 26 * 8, 1) and f["Z"].dtype == np.int64
        assert f.attrs["profile"] == "calibrated"
    RadioMLFile(small_file).close()  # passes every layout check


def test_deterministic_for_a_seed(tmp_path):
    a = write_synthetic(tmp_path / "a.hdf5", 2, seed=7, progress=False)
    b = write_synthetic(tmp_path / "b.hdf5", 2, seed=7, progress=False)
    c = write_synthetic(tmp_path / "c.hdf5", 2, seed=8, progress=False)
    d = write_synthetic(tmp_path / "d.hdf5", 2, seed=7, cfg=HARSH, progress=False)
    with h5py.File(a) as fa, h5py.File(b) as fb, h5py.File(c) as fc, h5py.File(d) as fd:
        np.testing.assert_array_equal(fa["X"][:], fb["X"][:])
        assert not np.array_equal(fa["X"][:], fc["X"][:]) and not np.array_equal(fa["X"][:], fd["X"][:])
        assert fd.attrs["profile"] == "harsh"


def test_the_harsh_profile_is_the_earlier_generator():
    """Frames of the earlier generator (before the calibration), pinned by a few values per class."""
    y = generate_frames("16QAM", np.array([30.0, 0.0]), np.random.default_rng(5), HARSH)
    np.testing.assert_allclose(y[0, :3], [0.8054388 - 0.45495027j, 0.6091868 - 0.44830483j,
                                          0.36322275 - 0.4857178j], rtol=1e-5)  # printed by the earlier code
    for name in CLASSES:  # unit power and an SNR per sample equal to the label, as before
        ys, s, w, _ = generate_frames(name, np.array(SNRS_DB, float), np.random.default_rng(0), HARSH, components=True)
        np.testing.assert_allclose(np.mean(np.abs(ys) ** 2, 1), 1.0, rtol=1e-4)
        snr = 10 * np.log10(np.mean(np.abs(s) ** 2, 1) / np.mean(np.abs(w) ** 2, 1))
        np.testing.assert_allclose(snr, SNRS_DB, atol=1e-6)


def test_calibrated_v1_is_the_calibrated_generator_before_am_dsb_and_oqpsk():
    """The reference models' data: frames of the calibrated generator before AM-DSB and OQPSK were fitted."""
    rng = lambda: np.random.default_rng(5)  # noqa: E731
    pins = {"16QAM": [-0.3675648 - 1.1007489j, -0.07892871 - 1.1189407j],  # printed by the earlier code
            "AM-DSB-WC": [5.9729347 - 0.10890404j, 6.102459 - 0.11590097j],
            "OQPSK": [-0.92101103 + 0.6679091j, -0.93276185 + 0.65496814j]}
    for name, first in pins.items():
        y = generate_frames(name, np.array([30.0, 0.0]), rng(), CALIBRATED_V1)
        np.testing.assert_allclose(y[0, :2], first, rtol=1e-5)
    for name in CLASSES:  # the classes left as they were: the same signal under both profiles, only the noise differs
        if name not in ("AM-DSB-WC", "AM-DSB-SC", "OQPSK"):
            _, s1, _, _ = generate_frames(name, np.array([30.0]), rng(), CALIBRATED_V1, components=True)
            _, s2, _, _ = generate_frames(name, np.array([30.0]), rng(), components=True)
            np.testing.assert_allclose(s1 / np.std(s1), s2 / np.std(s2), atol=1e-9)
    assert CALIBRATED_V1.snr_offset_db == 3.0 and CAL.snr_offset_db == 1.0


@pytest.mark.parametrize("name", CLASSES)
def test_calibrated_noise_follows_the_voltage_convention_and_frames_have_unit_deviation(name):
    snrs = np.array(SNRS_DB, float).repeat(2)
    y, s, w, _ = generate_frames(name, snrs, np.random.default_rng(0), components=True)
    assert y.shape == (len(snrs), FRAME_LENGTH) and y.dtype == np.complex64 and np.isfinite(y).all()
    per_sample_db = 10 * np.log10(np.mean(np.abs(s) ** 2, 1) / np.mean(np.abs(w) ** 2, 1))
    np.testing.assert_allclose(per_sample_db, 2 * (snrs + CAL.snr_offset_db), atol=1e-6)
    np.testing.assert_allclose(np.std(y, axis=1), 1.0, rtol=1e-4)


def _symbol_rate(x: np.ndarray) -> float:
    """The strongest spectral line of |x|^2 away from DC, averaged over frames of one symbol rate: the
    symbol rate of a linearly modulated signal (the cycle frequency of its second-order cyclostationarity)."""
    a = np.abs(x) ** 2
    spec = np.mean(np.abs(np.fft.rfft(a - a.mean(1, keepdims=True), axis=1)) ** 2, axis=0)
    f = np.fft.rfftfreq(x.shape[1])
    spec[f < 0.07] = 0  # below the fastest symbol rate here (12 samples): the data's own envelope
    return float(f[spec.argmax()])


def test_calibrated_symbol_rate_is_one_in_eight_and_harsh_varies():
    """The symbol-rate line of |x|^2 (under the calibrated pulse, RRC(0.5)^3, it is too weak to find: its
    excess band is cubed away; the same symbols with one RRC show where they sit)."""
    one_rrc = dataclasses.replace(CAL, pulse_power=1.0)
    for name in ("QPSK", "16QAM", "8PSK"):
        _, s, _, sps = generate_frames(name, np.full(32, 30.0), np.random.default_rng(1), one_rrc, components=True)
        assert set(sps) == {8.0} and _symbol_rate(s) == pytest.approx(1 / 8, abs=1.5 / FRAME_LENGTH)
        _, s, _, sps = generate_frames(name, np.full(256, 30.0), np.random.default_rng(1), HARSH, components=True)
        assert set(sps) == set(range(4, 13))
        for k in (6, 9, 12):
            assert _symbol_rate(s[sps == k]) == pytest.approx(1 / k, abs=1.5 / FRAME_LENGTH), (name, k)


def _frequency_offset(x: np.ndarray, power: int) -> np.ndarray:
    """Per frame, the carrier offset of an M-PSK signal: the spectral line of x^M near DC, divided by M."""
    n = 16 * x.shape[1]
    spec = np.abs(np.fft.fft(x ** power, n, axis=1))
    f = np.fft.fftfreq(n)
    spec[:, np.abs(f) > 0.02] = 0  # the search band: +-0.01 cycles/sample of offset, above the symbol rate's lines
    return f[spec.argmax(1)] / power


def test_carrier_offsets_lie_in_their_stated_ranges():
    _, s, _, _ = generate_frames("BPSK", np.full(256, 30.0), np.random.default_rng(2), components=True)
    cfo = _frequency_offset(s, 2)
    assert np.abs(cfo).max() < 5 * CAL.cfo and 0.5 * CAL.cfo < cfo.std() < 1.6 * CAL.cfo  # N(0, 1e-4)
    _, s, _, _ = generate_frames("BPSK", np.full(256, 30.0), np.random.default_rng(2), HARSH, components=True)
    cfo = _frequency_offset(s, 2)
    assert np.abs(cfo).max() <= HARSH.cfo + 1e-4 and np.abs(cfo).max() > 0.8 * HARSH.cfo  # U(-0.002, 0.002)
    _, s, _, _ = generate_frames("FM", np.full(256, 30.0), np.random.default_rng(2), components=True)
    inst = np.angle(s[:, 1:] * np.conj(s[:, :-1])).mean(1) / (2 * np.pi)  # mean instantaneous frequency
    lo, hi = CAL.fm_offset_range
    assert ((np.abs(inst) > lo - 5 * CAL.cfo - 0.002) & (np.abs(inst) < hi + 5 * CAL.cfo + 0.002)).all()


def _line_share(x: np.ndarray) -> np.ndarray:
    """Per frame, the share of the power in its strongest spectral line (a carrier, wherever the offset put it)."""
    spec = np.abs(np.fft.fft(x, 16 * x.shape[1], axis=1)) ** 2
    return spec.max(1) / (x.shape[1] * np.sum(np.abs(x) ** 2, axis=1))


def test_ask_is_unipolar_with_a_dc_line_and_ssb_is_carrier_dominated():
    rng = np.random.default_rng(3)
    for name in ("OOK", "4ASK", "8ASK"):
        _, s, _, _ = generate_frames(name, np.full(16, 30.0), rng, components=True)
        dc = _line_share(s)
        assert (dc > 0.3).all(), (name, dc.min())  # 0.5 for OOK, 0.64 for 4ASK, 0.7 for 8ASK on average
    for name in ("4ASK", "8ASK"):  # harsh: bipolar, no carrier line
        _, s, _, _ = generate_frames(name, np.full(16, 30.0), rng, HARSH, components=True)
        assert (_line_share(s) < 0.2).all(), name  # a random spectrum's largest bin, not a line
    for name in ("AM-SSB-WC", "AM-SSB-SC"):
        _, s, _, _ = generate_frames(name, np.full(16, 30.0), rng, components=True)
        assert (_line_share(s) > 0.9).all(), name
    _, s, _, _ = generate_frames("AM-SSB-SC", np.full(16, 30.0), rng, HARSH, components=True)
    assert np.mean(_line_share(s)) < 0.5  # harsh: no carrier, only the narrow message's own spectral peaks


def _clean(name: str, cfg: SynthConfig, n: int = 64) -> np.ndarray:
    return generate_frames(name, np.full(n, 30.0), np.random.default_rng(6), cfg, components=True)[1]


def _line(s: np.ndarray, block: int = 128) -> np.ndarray:
    """Per frame, how nearly its I/Q points lie on a line through 0 (1: a real signal times a phase), in
    blocks short enough for the carrier offset not to turn the line."""
    b = s.reshape(len(s), -1, block)
    return (np.abs((b ** 2).sum(2)) / (np.abs(b) ** 2).sum(2)).mean(1)


def test_am_dsb_wc_is_a_real_cosine_off_dc():
    """Real DSB-WC frames: I and Q in-phase copies of one zero-mean sinusoid of period 25-32 samples."""
    s = _clean("AM-DSB-WC", CAL)
    dc = np.abs(s.mean(1)) ** 2 / np.mean(np.abs(s) ** 2, 1)
    assert (dc < 0.01).all() and (_line(s) > 0.98).all()
    spec = np.abs(np.fft.fft(s, 8 * s.shape[1], axis=1)) ** 2
    peak = np.abs(np.fft.fftfreq(spec.shape[1])[spec.argmax(1)])
    lo, hi = CAL.dsb_carrier_range
    assert ((peak > lo - 0.002) & (peak < hi + 0.002)).all()
    assert (np.abs(s) / np.abs(s).max(1, keepdims=True)).min(1).max() < 0.05  # a cosine: crosses zero
    s = _clean("AM-DSB-WC", CALIBRATED_V1)  # before: a carrier at DC
    assert (np.abs(s.mean(1)) ** 2 / np.mean(np.abs(s) ** 2, 1) > 0.5).all()


def _envelope_low_share(s: np.ndarray, cut: float = 0.012) -> np.ndarray:
    """Per frame, the share of its amplitude envelope's AC power below `cut` cycles/sample (the frame turned
    onto the real line, its envelope taken from the analytic signal)."""
    r = (s * np.exp(-1j * np.angle(np.sum(s ** 2, 1, keepdims=True)) / 2)).real
    f = np.fft.fftfreq(r.shape[1])
    env = np.abs(np.fft.ifft(np.fft.fft(r, axis=1) * (2.0 * (f > 0) + (f == 0)), axis=1))
    p = np.abs(np.fft.rfft(env - env.mean(1, keepdims=True), axis=1)) ** 2
    return p[:, np.fft.rfftfreq(r.shape[1]) < cut].sum(1) / p.sum(1)


def test_am_dsb_sc_amplitude_varies_slowly():
    """Real DSB-SC frames: a real tone whose amplitude follows a slow message (cut-off 0.005 or less)."""
    s = _clean("AM-DSB-SC", CAL)
    assert (_line(s) > 0.98).all() and (_envelope_low_share(s) > 0.85).all()
    rms = np.sqrt(np.mean(np.abs(s.reshape(len(s), -1, 32)) ** 2, 2))
    assert ((rms.max(1) - rms.min(1)) / rms.max(1) > 0.5).all()  # it does vary: a message, not a constant
    assert np.median(_envelope_low_share(_clean("AM-DSB-SC", CALIBRATED_V1))) < 0.85  # before: up to 0.04


def _rail_lag(s: np.ndarray) -> np.ndarray:
    """Per frame, the lag (samples) at which the I rail's power and the Q rail's are most anti-correlated,
    the frame first turned by its fourth-power phase (which puts axis points on the axes)."""
    s = s * np.exp(-1j * np.angle(np.sum(s ** 4, 1, keepdims=True)) / 4)
    i2, q2 = s.real ** 2 - np.mean(s.real ** 2, 1, keepdims=True), s.imag ** 2 - np.mean(s.imag ** 2, 1, keepdims=True)
    lags = np.arange(-8, 9)
    corr = np.array([np.mean(i2 * np.roll(q2, -k, axis=1), 1) for k in lags]).T
    return lags[corr.argmin(1)]


def test_oqpsk_puts_the_axis_points_q_rail_half_a_symbol_late():
    """Calibrated OQPSK: symbols on the axes, so each has power on one rail only, and the Q rail's half a symbol
    (4 samples) after the I rail's; textbook OQPSK (diagonal points, as before) shows no such lag."""
    no_cfo = dict(cfo=0.0)
    lag = _rail_lag(_clean("OQPSK", dataclasses.replace(CAL, **no_cfo)))
    assert (np.abs(lag) == 4).all(), np.unique(lag)
    assert (np.abs(_rail_lag(_clean("OQPSK", dataclasses.replace(CALIBRATED_V1, **no_cfo)))) != 4).all()


def test_pulse_spectrum_is_rrc_cubed():
    """The calibrated pulse: its power spectrum at half the symbol rate is 0.5^3 of the in-band level
    (RRC^3: -9 dB there), where a transmit RRC's is 0.5 (-3 dB); nothing passes 0.75/8 cycles/sample."""

    def psd(cfg):
        _, s, _, _ = generate_frames("16QAM", np.full(64, 30.0), np.random.default_rng(4), cfg, components=True)
        s = s * np.exp(-2j * np.pi * _frequency_offset(s, 4)[:, None] * np.arange(FRAME_LENGTH))  # carrier offset out
        p = np.mean(np.abs(np.fft.fft(s * np.hanning(FRAME_LENGTH), axis=1)) ** 2, axis=0)
        f = np.fft.fftfreq(FRAME_LENGTH)
        band = lambda lo, hi: p[(np.abs(f) >= lo) & (np.abs(f) < hi)].mean()  # noqa: E731
        return band(0, 0.01) , band(1 / 16 - 0.002, 1 / 16 + 0.002), band(0.1, 0.5)

    inband, edge, out = psd(CAL)
    assert edge / inband == pytest.approx(0.125, rel=0.35) and out / inband < 1e-3
    inband, edge, _ = psd(SynthConfig(pulse_power=1.0))
    assert edge / inband == pytest.approx(0.5, rel=0.35)


def test_constellations_of_both_profiles():
    c = constellations()
    r = np.unique(np.round(np.abs(c["64APSK"]) / np.abs(c["64APSK"]).min(), 3))
    np.testing.assert_allclose(r, [1, 2.2, 3.6, 5.2], atol=1e-3)
    assert [int((np.round(np.abs(c["64APSK"]) / np.abs(c["64APSK"]).min(), 3) == v).sum()) for v in r] == [4, 12, 20, 28]
    h = constellations(HARSH)
    assert [int((np.round(np.abs(h["64APSK"]) / np.abs(h["64APSK"]).min(), 3) == v).sum()) for v in r] == [8, 16, 20, 20]
    r = np.unique(np.round(np.abs(c["128APSK"]) / np.abs(c["128APSK"]).min(), 3))
    np.testing.assert_allclose(r, [1, 1.715, 2.118, 2.681, 2.75, 3.819], atol=1e-3)
    assert c["4ASK"].real.min() == 0 and h["4ASK"].real.min() < 0
    for name, pts in c.items():
        assert np.mean(np.abs(pts) ** 2) == pytest.approx(1.0), name
    assert {len(c[k]) for k in ("16QAM", "32QAM", "64QAM", "128QAM", "256QAM")} == {16, 32, 64, 128, 256}
    assert set(PROFILES) == {"calibrated", "calibrated-v1", "harsh"}


def test_amplitude_statistics_alone_separate_many_classes():
    """At 30 dB the classes' amplitude statistics (a kurtosis-like ratio) take at least 8 distinct values: the
    generator does not emit one signal under 24 labels. Amplitude alone cannot tell the constant-envelope classes
    (PSK, FM, GMSK) apart; their phase is what the real-data model judges (tests/test_sandbox.py)."""
    rng = np.random.default_rng(1)
    stats = []
    for name in CLASSES:
        y = generate_frames(name, np.full(64, 30.0), rng)
        a = np.abs(y)
        stats.append((np.mean(a ** 4) / np.mean(a ** 2) ** 2).round(2))  # kurtosis-like
    assert len(set(stats)) >= 8


def test_cli_writes_file_and_rejects_bad_input(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "x.hdf5"), "--frames-per-snr", "1", "--quiet"]) == 0
    assert "calibrated profile" in capsys.readouterr().out
    assert main(["--out", str(tmp_path / "h.hdf5"), "--frames-per-snr", "1", "--profile", "harsh", "--quiet"]) == 0
    with h5py.File(tmp_path / "h.hdf5") as f:
        assert f.attrs["profile"] == "harsh"
    assert main(["--out", str(tmp_path / "y.hdf5"), "--frames-per-snr", "0", "--quiet"]) == 2
    assert "frames_per_snr must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "y.hdf5").exists()
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "z.hdf5"), "--profile", "mild"])
