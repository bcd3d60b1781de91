"""A model this project did not define, from its QONNX file to the emulated board: `export.to_finn --qonnx`.

ForeignCNN differs from train/model.py's VGG10 wherever a user's model would: a learnt 6-bit
QuantIdentity in front (not a fixed-range QuantHardTanh), three convs of kernel 5/5/3 and
widths 12/20/16, a float conv bias and no BatchNorm after the last conv, a MaxPool of 4, one
dense layer with a float bias, 3- and 4-bit weights, exported by Brevitas' default
`export_qonnx` (the dynamo exporter), not by train/onnx_export.py.
"""
import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from export.to_finn import main as export_main


class ForeignCNN(nn.Module):
    def __init__(self):
        import brevitas.nn as qnn

        super().__init__()
        self.inp = qnn.QuantIdentity(bit_width=6, return_quant_tensor=True)
        self.c1, self.b1 = qnn.QuantConv1d(2, 12, 5, padding=2, weight_bit_width=3, bias=False), nn.BatchNorm1d(12)
        self.a1, self.p1 = qnn.QuantReLU(bit_width=3), nn.MaxPool1d(4)
        self.c2, self.b2 = qnn.QuantConv1d(12, 20, 5, padding=2, weight_bit_width=3, bias=False), nn.BatchNorm1d(20)
        self.a2, self.p2 = qnn.QuantReLU(bit_width=3), nn.MaxPool1d(2)
        self.c3 = qnn.QuantConv1d(20, 16, 3, padding=1, weight_bit_width=4, bias=True)
        self.a3, self.p3 = qnn.QuantReLU(bit_width=4), nn.MaxPool1d(2)
        self.fc = qnn.QuantLinear(16 * 64, 24, bias=True, weight_bit_width=4)

    def forward(self, x):
        x = self.p1(self.a1(self.b1(self.c1(self.inp(x)))))
        x = self.p2(self.a2(self.b2(self.c2(x))))
        return self.fc(torch.flatten(self.p3(self.a3(self.c3(x))), 1))


@pytest.fixture(scope="module")
def foreign_qonnx(tmp_path_factory):
    """ForeignCNN, its statistics set by a few batches of RadioML-scale noise, as Brevitas exports it."""
    from brevitas.export import export_qonnx

    torch.manual_seed(0)
    model = ForeignCNN().train()
    with torch.no_grad():
        for _ in range(20):
            model(torch.randn(16, 2, 1024) * 0.02)
    path = tmp_path_factory.mktemp("foreign") / "foreign.onnx"
    export_qonnx(model.eval(), torch.zeros(1, 2, 1024), str(path))
    return path


def test_a_foreign_qonnx_model_goes_through_export_build_and_the_emulated_board(foreign_qonnx, small_file, tmp_path,
                                                                              capsys):
    from build.__main__ import main as build_main
    from driver.validate import main as validate_main
    from export.golden import qonnx_logits
    from radioml.dataset import RadioMLFile

    exp, bundle, val = tmp_path / "export", tmp_path / "bundle", tmp_path / "validate.json"
    assert export_main(["--qonnx", str(foreign_qonnx), "--out", str(exp), "--data", str(small_file),
                        "--check-frames", "6"]) == 0
    rep = json.loads((exp / "export_report.json").read_text())
    assert rep["ok"] and rep["reference"] == "qonnx"
    assert [s["stage"] for s in rep["stages"]] == ["qcdq_ort", "finn/qonnx_to_finn", "finn/to_4d", "finn/streamline",
                                                   "finn/channels_last"]
    for s in rep["stages"]:
        assert s["top1_agreement"] == 1.0 and s["max_abs_diff"] < 1e-4 and s["tie_frames"] == 0, s
        assert s["integer_exact"] is (True if s["stage"].startswith("finn/") else None), s
    io = json.loads((exp / "io.json").read_text())
    assert io["input_dtype"] == "INT6" and io["input_shape"] == [1, 1024, 1, 2] and io["model_config"] == {}

    assert build_main(["--export", str(exp), "--out", str(bundle), "--board", "ZCU104", "--target-fps", "20000"]) == 0
    folded = json.loads((bundle / "build_report.json").read_text())["folded_verification"]
    assert folded["ok"] and folded["output_bit_exact"] and folded["reference"]["top1_agreement"] == 1.0
    # its last bias is a float: the accelerator cannot end in FINN's LabelSelect, and says so before any step
    assert build_main(["--export", str(exp), "--out", str(tmp_path / "class"), "--output", "class"]) == 2
    assert "--output class: the scores before the TopK are FLOAT32" in capsys.readouterr().err
    assert not (tmp_path / "class").exists()

    assert validate_main(["--bundle", str(bundle), "--data", str(small_file), "--emulate", "--limit", "48",
                          "--out", str(val)]) == 0
    m = json.loads(val.read_text())
    assert m["frames"] == 48
    with RadioMLFile(small_file) as ds:
        x = np.ascontiguousarray(ds.read(np.array(m["frame_indices"])).transpose(0, 2, 1))
    ref = qonnx_logits(exp / "model_qonnx.onnx", x)
    assert m["predictions"] == ref.argmax(1).tolist()
    assert len(set(m["predictions"])) > 1  # the model tells frames apart: equal predictions are not trivially equal


def _edited(src, dest, edit):
    m = onnx.load(str(src))
    edit(m)
    onnx.save(m, str(dest))
    return dest


def test_qonnx_files_the_flow_cannot_take_are_refused_in_one_line(foreign_qonnx, small_file, tmp_path, capsys):
    from onnx import helper

    def softmax(m):
        out = m.graph.output[0].name
        m.graph.node.append(helper.make_node("Softmax", [out], ["probs"], name="Softmax_0", axis=1))
        m.graph.output[0].name = "probs"

    def short_frames(m):
        m.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 512

    cases = [
        (_edited(foreign_qonnx, tmp_path / "softmax.onnx", softmax),
         "ops this flow does not convert to FINN dataflow layers: Softmax (Softmax_0)"),
        (_edited(foreign_qonnx, tmp_path / "short.onnx", short_frames), "has shape [1, 2, 512]; the flow feeds one"),
        (tmp_path / "missing.onnx", "no such file"),
    ]
    (tmp_path / "text.onnx").write_text("not a model")
    cases.append((tmp_path / "text.onnx", "not a loadable ONNX file (DecodeError: "))
    for path, message in cases:
        out = tmp_path / ("out-" + path.stem)
        assert export_main(["--qonnx", str(path), "--out", str(out), "--data", str(small_file)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and str(path) in err
        assert message in err, err
        assert not out.exists()
    assert export_main(["--qonnx", str(foreign_qonnx), "--fresh-bits", "4", "--out", str(tmp_path / "x"),
                        "--data", str(small_file)]) == 2
    assert "exactly one of --run, --fresh-bits or --qonnx" in capsys.readouterr().err
