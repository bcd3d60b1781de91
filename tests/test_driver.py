"""Driver: packing equals FINN's reference bit for bit; emulated runs match PyTorch; error cases."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from build.config import BuildConfig
from build.finn_env import prepare
from build.flow import build
from driver.overlay import AMCOverlay, DriverError, PynqBackend, load_io
from driver.packing import pack, unpack
from driver.validate import validate
from export.config import ExportConfig
from export.load import load_model
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
    assert back.dtype == np.float32 and np.array_equal(back, x)
    ref_back = packed_bytearray_to_finnpy(ref, DataType[name], x.shape, reverse_inner=rev_inner, reverse_endian=rev_endian)
    assert np.array_equal(np.asarray(ref_back, np.float32), back)


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
    torch.save({"format": "amc-vgg10-model/1", "config": TrainConfig(model=cfg).to_dict(),
                "model": model.state_dict()}, root / "model.pt")
    exp = export(ExportConfig(run=str(root / "model.pt"), out=str(root / "export"), data=str(small_file),
                              check_frames=2), log=lambda *_: None)
    b = build(BuildConfig(export_dir=str(exp), out=str(root / "build"), target_fps=5000), log=lambda *_: None)
    return root, exp, b


def test_emulated_validation_matches_pytorch_predictions(bundle, small_file):
    root, exp, b = bundle
    m = validate(b, small_file, batch_size=100, emulate=True, export_dir=exp, log=lambda *_: None)
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
    assert t["throughput_fps"] > 0 and t["throughput_with_packing_fps"] > 0
    with pytest.raises(DriverError, match="larger than the 16 frames"):
        ol.batch_size = 17


def test_error_cases(bundle, tmp_path, small_file):
    root, exp, b = bundle
    with pytest.raises(DriverError, match="driver_io.json: cannot read"):
        load_io(tmp_path)
    bad = tmp_path / "bad"
    shutil.copytree(b, bad)
    io = json.loads((bad / "driver_io.json").read_text())
    with pytest.raises(DriverError, match="names no bitfile"):
        PynqBackend(bad, io)
    io["bitfile"] = "finn-accel.bit"
    (bad / "finn-accel.bit").write_bytes(b"\0")
    with pytest.raises(DriverError, match="hardware handoff file missing"):
        PynqBackend(bad, io)
    (bad / "other.bit").write_bytes(b"\0")
    io["bitfile"] = "renamed.bit"
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
