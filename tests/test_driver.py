"""Driver: packing equals FINN's reference bit for bit; emulated runs match PyTorch; error cases."""
import copy
import dataclasses
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from build.config import BuildConfig
from export.finn_env import prepare
from build.flow import build
from driver.overlay import AMCOverlay, DriverError, PynqBackend, load_io
from driver.packing import pack, unpack, value_dtype
from driver.validate import validate
from export.config import ExportConfig
from export.load import load_model
from train.saved_model import save_model
from export.to_finn import export
from radioml.dataset import RadioMLFile

prepare()
from finn.util.data_packing import finnpy_to_packed_bytearray, packed_bytearray_to_finnpy  # noqa: E402
from qonnx.core.datatype import DataType  # noqa: E402

NAMES = [f"INT{b}" for b in range(2, 33)] + [f"UINT{b}" for b in range(1, 33)] + ["BINARY", "BIPOLAR", "FLOAT32"]


@st.composite
def tensors(draw):
    name = draw(st.sampled_from(NAMES))
    dt = DataType[name]
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))) + (draw(st.integers(1, 40)),)
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    if name == "FLOAT32":
        x = rng.standard_normal(shape).astype(np.float32)
    elif name == "BIPOLAR":
        x = rng.choice([-1.0, 1.0], shape).astype(np.float32)
    else:
        x = rng.integers(int(dt.min()), int(dt.max()) + 1, shape, dtype=np.int64).astype(np.float64).astype(np.float32)
        x = np.where(np.abs(x) < 2**24, x, 0).astype(np.float32)  # float32 holds these exactly
    return name, x, draw(st.booleans()), draw(st.booleans())


@settings(max_examples=300, deadline=None)
@given(tensors())
def test_pack_unpack_equal_finn_and_round_trip(case):
    name, x, rev_inner, rev_endian = case
    ref = np.ascontiguousarray(finnpy_to_packed_bytearray(x, DataType[name], reverse_inner=rev_inner,
                                                          reverse_endian=rev_endian))
    ours = pack(x, name, rev_inner, rev_endian)
    assert ours.dtype == np.uint8 and np.array_equal(ours, ref)
    back = unpack(ours, name, x.shape, rev_inner, rev_endian)
    assert back.dtype == value_dtype(name) and np.array_equal(back, x)
    ref_back = packed_bytearray_to_finnpy(ref, DataType[name], x.shape, reverse_inner=rev_inner, reverse_endian=rev_endian)
    assert np.array_equal(np.asarray(ref_back, np.float32), back)


def _reference_pack(codes, bits):
    """Python-integer packing: element k at bits k*b.., little-endian bytes (FINN's reverse_inner/_endian)."""
    nbytes = -(-codes.shape[-1] * bits // 8)
    rows = [sum(int(c) << (k * bits) for k, c in enumerate(row)).to_bytes(nbytes, "little")
            for row in codes.reshape(-1, codes.shape[-1])]
    return np.frombuffer(b"".join(rows), np.uint8).reshape(*codes.shape[:-1], nbytes)


@pytest.mark.parametrize("name", ["INT26", "INT32", "UINT32", "INT33", "INT48", "UINT48", "INT63", "INT64", "UINT64"])
def test_wide_integers_pack_and_unpack_exactly(name):
    bits, signed = int(name.lstrip("UINT")), not name.startswith("U")
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    rng = random.Random(bits)
    vals = [lo, hi, lo + 1, hi - 1, 0, 1, (1 << 24) + 1, hi - 12345, lo + 99991 if signed else (1 << 24) + 3]
    vals += [rng.randint(lo, hi) for _ in range(39)]  # 48 values, most far above float32's 2**24
    x = np.array(vals, dtype=np.uint64 if name == "UINT64" else np.int64).reshape(2, -1)
    codes = [v & ((1 << bits) - 1) for v in x.ravel().tolist()]
    ref = _reference_pack(np.array(codes, dtype=object).reshape(x.shape), bits)
    packed = pack(x, name)
    assert np.array_equal(packed, ref)
    back = unpack(packed, name, x.shape)
    assert back.dtype == (np.uint64 if name == "UINT64" else np.int64)
    assert back.tolist() == x.tolist()  # exact, as Python integers


def test_unpack_rejects_wrong_sizes():
    with pytest.raises(ValueError, match="does not fit"):
        unpack(np.zeros((2, 3), np.uint8), "INT4", (2, 8))
    with pytest.raises(ValueError, match="unsupported datatype"):
        pack(np.zeros((1, 2)), "FIXED<8,4>")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, small_file):
    """A trained-like model's export and estimate build: what the driver reads."""
    from export.load import fresh_model
    from train.config import TrainConfig

    model, cfg, _ = fresh_model(4, seed=5)
    root = tmp_path_factory.mktemp("bundle")
    save_model(model, cfg, TrainConfig(model=cfg).to_dict(), root / "model.pt")
    exp = export(ExportConfig(run=str(root / "model.pt"), out=str(root / "export"), data=str(small_file),
                              check_frames=2))
    b = build(BuildConfig(export_dir=str(exp), out=str(root / "build"), target_fps=5000))
    return root, exp, b


def test_emulated_validation_matches_pytorch_predictions(bundle, small_file):
    root, exp, b = bundle
    m = validate(b, small_file, batch_size=100, emulate=True, export_dir=exp)
    model, _, _ = load_model(root / "model.pt")
    with RadioMLFile(small_file) as ds:
        idx = np.array(m["frame_indices"])
        x = torch.from_numpy(np.ascontiguousarray(ds.read(idx).transpose(0, 2, 1)))
        assert np.array_equal(np.sort(idx), ds.split().test)
    with torch.no_grad():
        ref = model(x).argmax(1).numpy()
    assert m["frames"] == len(ref) == 624
    assert np.array_equal(np.array(m["predictions"]), ref)
    assert set(m) >= {"accuracy", "accuracy_at_30dB", "accuracy_per_snr", "accuracy_per_class", "confusion",
                      "frames_per_s_accelerator", "frames_per_s_with_host_packing"}


def test_overlay_api_and_throughput_test(bundle):
    root, exp, b = bundle
    from driver.emulate import EmulatedBackend

    io = load_io(b)
    ol = AMCOverlay(b, 8, backend=EmulatedBackend(exp, io), max_batch=16)
    assert ol.idt == "INT4" and ol.ishape_normal == (8, 1024, 1, 2) and ol.oshape_normal[-1] == 24
    assert ol.ishape_packed[-1] == int(np.ceil(ol.ishape_folded[-1] * 4 / 8))
    scores, top1 = ol.classify(np.random.default_rng(0).standard_normal((11, 2, 1024)).astype(np.float32))
    assert scores.shape == (11, 24) and top1.shape == (11,)
    t = ol.throughput_test(repeats=2)
    assert t["batch_size"] == 8 and t["throughput_fps"] == pytest.approx(8 / t["runtime_s"])
    assert t["throughput_with_packing_fps"] == pytest.approx(8 / t["runtime_with_packing_s"])
    assert np.isfinite(t["throughput_fps"]) and np.isfinite(t["throughput_with_packing_fps"])
    with pytest.raises(DriverError, match="larger than the 16 frames"):
        ol.batch_size = 17


def test_error_cases(bundle, tmp_path, small_file):
    root, exp, b = bundle
    with pytest.raises(DriverError, match="driver_io.json: missing"):
        load_io(tmp_path)
    bad = tmp_path / "bad"
    shutil.copytree(b, bad)
    io = load_io(bad)
    with pytest.raises(DriverError, match="names no bitfile"):
        PynqBackend(bad, io)
    io = dataclasses.replace(io, bitfile="finn-accel.bit")
    (bad / "finn-accel.bit").write_bytes(b"\0")
    with pytest.raises(DriverError, match="hardware handoff file missing"):
        PynqBackend(bad, io)
    (bad / "other.bit").write_bytes(b"\0")
    io = dataclasses.replace(io, bitfile="renamed.bit")
    with pytest.raises(DriverError, match=r"renamed.bit: bitfile missing .*the bundle has finn-accel.bit, other.bit"):
        PynqBackend(bad, io)
    notes = tmp_path / "notes.hdf5"
    notes.write_text("not hdf5")
    r = subprocess.run([sys.executable, "-m", "driver.validate", "--bundle", str(b), "--data", str(notes),
                        "--emulate", "--export", str(exp)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert r.returncode == 2 and f"error: {notes}: not a readable HDF5 file" in r.stderr


def test_driver_imports_without_torch_or_pynq():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['pynq'] = None; sys.modules['onnxruntime'] = None\n"
            "import driver.overlay, driver.packing, driver.validate, radioml.dataset, radioml.quant\n"
            "print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert r.stdout.strip() == "ok", r.stderr


# -- the board path: PynqBackend's real register sequence against a register-level pynq stand-in --------
STANDIN = Path(__file__).resolve().parent / "pynq_standin"


def _forget_pynq():
    """Drop pynq and finn-plus-driver (which binds pynq's names at import) from the imported modules."""
    for name in [m for m in sys.modules if m.split(".")[0] in ("pynq", "finn_plus_driver")]:
        del sys.modules[name]


@pytest.fixture
def pynq_standin(monkeypatch):
    monkeypatch.syspath_prepend(str(STANDIN))
    _forget_pynq()
    import pynq

    assert Path(pynq.__file__).parent.parent == STANDIN
    pynq.DEVICE.reset()
    yield pynq
    _forget_pynq()


def _board_bundle(b, exp, dest, alveo: bool):
    """The estimate bundle turned into what a --bitfile build leaves (bitfile names as FINN writes them)."""
    from driver.emulate import EmulatedBackend

    shutil.copytree(b, dest)
    io = load_io(dest)
    (dest / "bitfile").mkdir()
    d = copy.deepcopy(io.io_shape_dict)
    if alveo:
        d.update(idma_names=["idma_0"], odma_names=["odma_0"])
        io = dataclasses.replace(io, platform="alveo", bitfile="bitfile/finn-accel-0.xclbin", io_shape_dict=d)
        (dest / io.bitfile).write_bytes(b"xclbin")
    else:
        io = dataclasses.replace(io, bitfile="bitfile/finn-accel.bit")
        (dest / io.bitfile).write_bytes(b"bit")
        (dest / "bitfile/finn-accel.hwh").write_text("<hwh/>")
    io.write(dest)  # what the --bitfile build writes (its own driver_io.json, FINN's settings.json saying the same)
    from radioml.finn_settings import SETTINGS, write_finn_settings

    (dest / SETTINGS).unlink()
    write_finn_settings(dest, io)
    emu = EmulatedBackend(exp, io)

    def compute(x, n):  # the accelerator: packed input bytes in, packed output bytes out
        out = np.zeros([n] + list(d["oshape_packed"][0][1:]), np.uint8)
        emu.run(x, out, n)
        return out
    return dest, io, compute


@pytest.mark.parametrize("alveo", [False, True], ids=["zynq", "alveo"])
def test_pynq_backend_register_sequence_matches_finn_driver(bundle, tmp_path, pynq_standin, alveo):
    root, exp, b = bundle
    from driver.emulate import EmulatedBackend

    dest, io, compute = _board_bundle(b, exp, tmp_path / "board", alveo)
    pynq_standin.DEVICE.compute = compute
    ol = AMCOverlay(dest, 8, backend=PynqBackend(dest, io))
    allocs = [e for e in pynq_standin.DEVICE.log if e[0] == "allocate"]
    # FINN's driver: cacheable buffers on Zynq, device (non-cacheable) buffers on Alveo
    assert [a[3] for a in allocs] == [not alveo, not alveo]
    assert [a[1] for a in allocs] == [ol.ishape_packed, ol.oshape_packed]
    frames = np.random.default_rng(3).standard_normal((8, 2, 1024)).astype(np.float32)
    start = len(pynq_standin.DEVICE.log)
    scores, _ = ol.classify(frames)
    log = pynq_standin.DEVICE.log[start:]
    ia, oa = int(ol.ibuf.device_address), int(ol.obuf.device_address)
    assert ia >> 32 and oa >> 32  # buffers above 4 GiB: the high address word matters
    if alveo:  # FINN: input kernel first, then the output kernel, whose completion is awaited
        assert log == [("flush", ia), ("start", "idma_0", ia, 8), ("start", "odma_0", oa, 8), ("invalidate", oa)]
    else:  # FINN's execute_on_buffers + wait_until_finished for zynq-iodma
        want = [("flush", ia), ("read", "odma0", 0)]
        for name, addr in (("odma0", oa), ("idma0", ia)):
            want += [("write", name, 0x10, addr & 0xFFFFFFFF), ("write", name, 0x14, addr >> 32),
                     ("write", name, 0x1C, 8), ("write", name, 0x00, 1)]
        want += [("read", "odma0", 0), ("invalidate", oa)]
        assert log == want
    ref = AMCOverlay(b, 8, backend=EmulatedBackend(exp, load_io(b))).classify(frames)[0]
    assert np.array_equal(scores, ref)


def test_pynq_backend_refuses_busy_dma_and_times_out(bundle, tmp_path, pynq_standin):
    root, exp, b = bundle
    dest, io, compute = _board_bundle(b, exp, tmp_path / "board", alveo=False)
    pynq_standin.DEVICE.compute = compute
    ol = AMCOverlay(dest, 4, backend=PynqBackend(dest, io, timeout_s=0.2, timeout_s_per_frame=0.0))
    x = np.zeros(ol.ishape_normal, np.float32)
    pynq_standin.DEVICE.busy = True
    with pytest.raises(DriverError, match="odma0 is not idle"):
        ol.execute(x)
    pynq_standin.DEVICE.busy, pynq_standin.DEVICE.hang = False, True
    with pytest.raises(DriverError, match=r"odma0 raised no ap_done for a batch of 4 frames within 0.2 s"):
        ol.execute(x)
    adest, aio, acompute = _board_bundle(b, exp, tmp_path / "alveo", alveo=True)
    pynq_standin.DEVICE.reset()
    pynq_standin.DEVICE.compute, pynq_standin.DEVICE.hang = acompute, True
    aol = AMCOverlay(adest, 4, backend=PynqBackend(adest, aio, timeout_s=0.2, timeout_s_per_frame=0.0))
    with pytest.raises(DriverError, match="odma_0 did not finish a batch of 4 frames"):
        aol.execute(x)


def test_validate_on_the_board_path_equals_emulation(bundle, tmp_path, small_file, pynq_standin):
    root, exp, b = bundle
    dest, io, compute = _board_bundle(b, exp, tmp_path / "board", alveo=False)
    pynq_standin.DEVICE.compute = compute
    board = validate(dest, small_file, batch_size=100)
    emulated = validate(b, small_file, batch_size=100, emulate=True)
    assert board["emulated"] is False and board["frames"] == emulated["frames"] == 624
    assert board["predictions"] == emulated["predictions"]


def test_bundle_names_its_export_relative_to_itself(bundle, tmp_path, small_file):
    root, exp, b = bundle
    io = load_io(b)
    assert not Path(io.export_dir).is_absolute() and (Path(b) / io.export_dir).resolve() == Path(exp).resolve()
    moved = tmp_path / "moved"
    shutil.copytree(root, moved, ignore=shutil.ignore_patterns("model.pt"))
    m = validate(moved / "build", small_file, batch_size=200, emulate=True, limit=50)
    assert m["frames"] == 50


def test_validate_holds_one_batch_of_frames_at_a_time(bundle, small_file):
    """Peak traced memory scales with the batch (not a 65,536-frame read buffer)."""
    import tracemalloc

    root, exp, b = bundle
    peaks = {}
    for bs in (1, 64, 512):
        validate(b, small_file, batch_size=bs, emulate=True, export_dir=exp)  # warm
        tracemalloc.start()
        validate(b, small_file, batch_size=bs, emulate=True, export_dir=exp)
        peaks[bs] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    frame = 1024 * 2 * 4  # one float32 frame
    print(f"\ntraced peak of driver.validate --emulate (MB): { {k: round(v / 2**20, 2) for k, v in peaks.items()} }")
    assert peaks[1] < 2 * 2**20, peaks  # the 624 test frames at once would be 5 MB
    assert peaks[512] >= 512 * frame, peaks  # a batch of float frames is held
    for bs, peak in peaks.items():
        assert peak <= 2 * 2**20 + 6 * bs * frame, peaks


def _python38():
    for cand in [os.environ.get("AMC_PYTHON38", "")] + sorted(Path.home().glob(".pyenv/versions/3.8*/bin/python3.8")):
        if cand and Path(cand).is_file():
            return str(cand)
    return shutil.which("python3.8")


@pytest.mark.slow
def test_driver_and_radioml_run_on_a_pynq_image_python(tmp_path, small_file):
    """PYNQ 2.7 images: Python 3.8, numpy 1.x, maybe no h5py. Import, pack/unpack and read the data there."""
    py = _python38()
    if py is None:
        pytest.skip("no Python 3.8 interpreter here (set AMC_PYTHON38)")
    venv = tmp_path / "py38"
    subprocess.run([py, "-m", "venv", str(venv)], check=True)
    r = subprocess.run([str(venv / "bin/pip"), "install", "-q", "numpy<2", "h5py<3.12"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    code = ("import sys; sys.modules['pynq'] = None\n"
            "import numpy as np, radioml.classes, radioml.quant, radioml.split, radioml.batches, radioml.metrics\n"
            "import driver.overlay, driver.packing, driver.validate\n"
            "from radioml.dataset import RadioMLFile\n"
            "from driver.packing import pack, unpack\n"
            "x = np.arange(-8, 8).reshape(2, 8)\n"
            "assert (unpack(pack(x, 'INT4'), 'INT4', x.shape) == x).all()\n"
            "w = np.array([[-2**47, 2**47 - 1, 12345678901]])\n"
            "assert unpack(pack(w, 'INT48'), 'INT48', w.shape).tolist() == w.tolist()\n"
            "with RadioMLFile(sys.argv[1]) as ds: print(sys.version_info[:2], np.__version__, len(ds.split().test))\n")
    r = subprocess.run([str(venv / "bin/python"), "-c", code, str(small_file)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[:3] == ["(3,", "8)", r.stdout.split()[2]] and r.stdout.split()[2].startswith("1.")
    assert r.stdout.split()[3] == "624"
    nohdf = ("import sys; sys.modules['h5py'] = None\n"
             "from radioml.dataset import RadioMLFile, DatasetError\n"
             "try:\n    RadioMLFile(sys.argv[1])\nexcept DatasetError as e:\n    print(e)\n")
    r = subprocess.run([str(venv / "bin/python"), "-c", nohdf, str(small_file)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert f"{small_file}: reading it needs h5py" in r.stdout and "apt-get install python3-h5py" in r.stdout, r.stderr


@pytest.mark.slow
def test_validate_peak_memory_for_batch_sizes_1_64_1024(bundle, tmp_path):
    """Peak RSS of `python -m driver.validate` on the board path (PynqBackend, pynq stand-in) over 3,120 frames.

    The stand-in's accelerator runs the golden model 16 frames at a time, so the figure is the driver's
    (reading, quantising, packing, DMA buffers, unpacking) plus a constant onnxruntime baseline that a
    board does not have. (With --emulate the CPU model's activations at batch 1024 alone take about 1 GB.)
    """
    from radioml.synthetic import write_synthetic

    root, exp, b = bundle
    data = write_synthetic(tmp_path / "mid.hdf5", frames_per_snr=48, seed=4, progress=False)
    dest, io, _ = _board_bundle(b, exp, tmp_path / "board", alveo=False)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forked pytest process across exec
    code = ("import sys\n"
            f"sys.path.insert(0, {str(STANDIN)!r})\n"
            "import numpy as np, pynq\n"
            "from driver.emulate import EmulatedBackend\n"
            "from driver.overlay import load_io\n"
            "from driver.validate import main\n"
            "io = load_io(sys.argv[1]); emu = EmulatedBackend(sys.argv[3], io)\n"
            "shape = list(io.io_shape_dict['oshape_packed'][0][1:])\n"
            "def compute(x, n):\n"
            "    out = np.zeros([n] + shape, np.uint8)\n"
            "    for a in range(0, n, 16):\n"
            "        emu.run(x[a:a + 16], out[a:a + 16], min(16, n - a))\n"
            "    return out\n"
            "pynq.DEVICE.compute = compute\n"
            "assert main(['--bundle', sys.argv[1], '--data', sys.argv[2], '--batch-size', sys.argv[4]]) == 0\n"
            "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM:')][0]\n"
            "print('peak_rss_kb', hwm.split()[1])\n")
    rss = {}
    for bs in (1, 64, 1024):
        r = subprocess.run([sys.executable, "-c", code, str(dest), str(data), str(exp), str(bs)],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.startswith("accelerator: 3120 test frames"), r.stdout
        rss[bs] = int(r.stdout.split("peak_rss_kb")[1].split()[0]) / 1024
    print(f"\npeak RSS of driver.validate on the board path (MB): {rss}")
    assert rss[1024] < 256, rss
    frame_mb = 1024 * 2 * 4 / 2**20
    assert rss[1] < rss[1024] < rss[1] + 10 * 1024 * frame_mb, rss  # grows with the batch only (a few copies of it)


def test_the_board_wheel_holds_only_the_board_side_and_is_reproducible(tmp_path):
    import zipfile

    from driver.wheel import build_wheel

    a, b = build_wheel(tmp_path / "a"), build_wheel(tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    with zipfile.ZipFile(a) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith("/METADATA"))).decode()
    assert {n.split("/")[0] for n in names if not n.startswith("amc_board-")} == {"radioml", "driver"}
    assert "driver/validate.py" in names and "radioml/dataset.py" in names
    assert "Requires-Python: >=3.8" in meta and "torch" not in meta and 'h5py; extra == "data"' in meta


@pytest.mark.slow
def test_the_board_wheel_installs_and_runs_under_a_pynq_image_python(tmp_path, small_file):
    """pip install of the wheel under Python 3.8 with numpy 1.x: the amc-validate command and the reader work."""
    from driver.wheel import build_wheel

    py = _python38()
    if py is None:
        pytest.skip("no Python 3.8 interpreter here (set AMC_PYTHON38)")
    wheel = build_wheel(tmp_path / "dist")
    venv = tmp_path / "board"
    subprocess.run([py, "-m", "venv", str(venv)], check=True)
    r = subprocess.run([str(venv / "bin/pip"), "install", "-q", "numpy<2", "h5py<3.12", str(wheel)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([str(venv / "bin/amc-validate"), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and "--bundle" in r.stdout, r.stderr[-2000:]
    code = ("import sys, driver, radioml; from radioml.dataset import RadioMLFile\n"
            "assert '/site-packages/' in driver.__file__, driver.__file__\n"
            "with RadioMLFile(sys.argv[1]) as ds: print(len(ds.split().test))\n")
    r = subprocess.run([str(venv / "bin/python"), "-c", code, str(small_file)], capture_output=True, text=True,
                       cwd=tmp_path, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert r.returncode == 0 and r.stdout.split() == ["624"], r.stderr[-2000:]


def _by_role(log, addresses: dict) -> list:
    """A stand-in event log with buffer addresses named by role (two drivers allocate different buffers)."""
    named = []
    for e in log:
        if e[0] in ("flush", "invalidate"):
            e = (e[0], addresses[e[1]])
        elif e[0] == "write" and e[2] in (0x10, 0x14):
            e = e[:3] + (next(f"{r}:{'lo' if e[2] == 0x10 else 'hi'}" for a, r in addresses.items()
                              if (a & 0xFFFFFFFF if e[2] == 0x10 else a >> 32) == e[3]),)
        named.append(e)
    return named


def test_finn_plus_driver_runs_a_bundle_built_here_as_this_projects_driver_does(bundle, tmp_path, small_file,
                                                                               pynq_standin):
    """finn-plus-driver's FINNDMAOverlay (PyPI), instantiated from the bundle's driver/settings.json as its command
    line does, gives this project's predictions and drives the DMAs with the same register sequence."""
    import json

    from radioml.finn_settings import check_finn_settings
    from finn_plus_driver import get_driver_class

    root, exp, b = bundle
    dest, io, compute = _board_bundle(b, exp, tmp_path / "board", alveo=False)
    pynq_standin.DEVICE.compute = compute
    settings = json.loads((dest / "driver" / "settings.json").read_text())
    check_finn_settings(settings, dest / "driver" / "settings.json")
    info = settings["driver_information"]
    assert info["io_shape_dict"]["idt"] == [f"DataType['{io.io_shape_dict['idt'][0]}']"]
    n = 48
    ours = validate(dest, small_file, batch_size=n, limit=n)
    finn = get_driver_class(info["driver_type"])(str(dest / io.bitfile), batch_size=n,
                                                  runtime_weight_dir=str(dest / "driver" / "runtime_weights"), **info)
    with RadioMLFile(small_file) as ds:
        x = ds.read(np.array(ours["frame_indices"]))  # (n, 1024, 2)
    ints = io.input_quant.quantize(x)[:, :, None, :]
    start = len(pynq_standin.DEVICE.log)
    logits = finn.execute(ints)
    finn_log = pynq_standin.DEVICE.log[start:]
    assert logits.reshape(n, -1).argmax(1).tolist() == ours["predictions"]
    assert len(set(ours["predictions"])) > 1

    ol = AMCOverlay(dest, n, backend=PynqBackend(dest, io))
    start = len(pynq_standin.DEVICE.log)
    scores, _ = ol.classify(np.ascontiguousarray(x.transpose(0, 2, 1)))
    our_log = pynq_standin.DEVICE.log[start:]
    assert np.array_equal(scores, logits.reshape(n, -1))
    # FINN copies its input into the DMA buffer and its output out of it; the register, flush and invalidate
    # sequence on the device is the same
    f_roles = {int(finn.ibuf_packed_device[0].device_address): "in", int(finn.obuf_packed_device[0].device_address): "out"}
    o_roles = {int(ol.ibuf.device_address): "in", int(ol.obuf.device_address): "out"}
    assert _by_role(finn_log, f_roles) == _by_role(our_log, o_roles)


def test_a_class_index_accelerator_predicts_as_the_logit_one_on_every_path(bundle, tmp_path, small_file,
                                                                          pynq_standin):
    """build --output class ends in FINN's LabelSelect: 1 byte a frame out; emulated, on the board path (pynq
    stand-in) and through finn-plus-driver's overlay it predicts what the logit accelerator predicts."""
    import json

    from finn_plus_driver import get_driver_class

    root, exp, b = bundle
    bc = build(BuildConfig(export_dir=str(exp), out=str(tmp_path / "class"), target_fps=5000, output="class"),
               log=lambda *_: None)
    rep = json.loads((bc / "build_report.json").read_text())
    assert rep["layers"][-1]["node"].startswith("LabelSelect") and rep["folded_verification"]["ok"]
    assert rep["verification"]["hw_layers_python"] == "SUCCESS"
    d = load_io(bc).io_shape_dict
    assert d["oshape_normal"] == [[1, 1]] and d["oshape_packed"] == [[1, 1, 1]] and d["odt"] == ["UINT8"]
    logits = validate(b, small_file, batch_size=100, emulate=True)
    emulated = validate(bc, small_file, batch_size=100, emulate=True)
    assert (emulated["output"], emulated["output_bytes_per_frame"]) == ("class", 1)
    assert (logits["output"], logits["output_bytes_per_frame"]) == ("logits", 96)
    assert emulated["predictions"] == logits["predictions"] and len(set(logits["predictions"])) > 1

    dest, io, compute = _board_bundle(bc, exp, tmp_path / "board", alveo=False)
    pynq_standin.DEVICE.compute = compute
    board = validate(dest, small_file, batch_size=100)
    assert board["predictions"] == logits["predictions"]
    info = json.loads((dest / "driver" / "settings.json").read_text())["driver_information"]
    finn = get_driver_class(info["driver_type"])(str(dest / io.bitfile), batch_size=100, **info)
    with RadioMLFile(small_file) as ds:
        x = ds.read(np.array(board["frame_indices"][:100]))
    assert finn.execute(io.input_quant.quantize(x)[:, :, None, :]).reshape(-1).tolist() == board["predictions"][:100]
