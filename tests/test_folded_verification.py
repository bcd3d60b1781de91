"""The accelerator computes what was checked: FINN's folding rules, and the folded graph verified in every build."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from build.config import BuildConfig
from build.flow import BuildFailed, build, step_load, step_minimize, step_partition, step_specialize, step_to_hw, \
    step_verify_folded
from export.finn_env import prepare

ROOT = Path(__file__).resolve().parents[1]
QUIET = dict(log=lambda *_: None)


def _model(path):
    prepare()
    from qonnx.core.modelwrapper import ModelWrapper

    return ModelWrapper(str(path))


def _pairs(model):
    """(generator, pool) node pairs: every depthwise sliding-window generator and the Pool it feeds."""
    from qonnx.custom_op.registry import getCustomOp

    out = []
    for n in model.graph.node:
        if n.op_type.startswith("ConvolutionInputGenerator") and getCustomOp(n).get_nodeattr("depthwise"):
            out.append((getCustomOp(n), getCustomOp(model.find_consumer(n.output[0]))))
    return out


def _mismatched_folding(built_dir, path):
    """The build's folding with every pool at full PE and its generator left narrower: what the old search wrote."""
    fold = json.loads((built_dir / "folding_config.json").read_text())
    pairs = _pairs(_model(built_dir / "model_dataflow.onnx"))
    assert len(pairs) == 7
    for swg, pool in pairs:
        fold[pool.onnx_node.name] = {"PE": pool.get_nodeattr("Channels")}
        fold[swg.onnx_node.name] = {"SIMD": 8, "parallel_window": 0}
    Path(path).write_text(json.dumps(fold))
    return path


def test_every_build_verifies_its_folded_graph_bit_exact_and_pairs_share_their_parallelism(fresh_build):
    r = json.loads((fresh_build / "build_report.json").read_text())
    v = r["folded_verification"]
    assert v["ok"] and v["mode"] == "python" and v["frames"] == 6 and v["output_bit_exact"]
    assert v["output_vs_streamlined_max_abs"] == 0.0 and v["reference"]["top1_agreement"] == 1.0
    m = _model(fresh_build / "model_dataflow.onnx")
    assert len(v["nodes"]) == len(m.graph.node) and all(n["mismatches"] == 0 and n["elements"] > 0 for n in v["nodes"])
    pairs = _pairs(m)
    assert len(pairs) == 7
    for swg, pool in pairs:
        assert swg.get_nodeattr("SIMD") == pool.get_nodeattr("PE"), (swg.onnx_node.name, pool.onnx_node.name)
        assert swg.get_nodeattr("parallel_window") == 0
    from build.folding_rules import violations

    assert violations(m) == []
    assert "folded graph verified (python) on 6 check frames: bit-exact" in \
        subprocess.run([sys.executable, "-c", "import json,sys; from build.report import format_report; "
                        f"print(format_report(json.load(open('{fresh_build / 'build_report.json'}'))))"],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout


def test_a_generator_pool_mismatch_fails_the_build_at_the_first_diverging_pool_and_keeps_the_work(
        tmp_path, fresh_export, fresh_build):
    from finn.builder.build_dataflow_steps import step_apply_folding_config

    bad = _mismatched_folding(fresh_build, tmp_path / "mismatched.json")

    def step_folding_unchecked(model, ctx):  # FINN's own step, without this project's rule check
        ctx.dcfg.folding_config_file = str(bad)
        return step_apply_folding_config(model, ctx.dcfg)

    steps = [step_load, step_to_hw, step_partition, step_specialize, step_folding_unchecked, step_minimize,
             step_verify_folded]
    with pytest.raises(BuildFailed) as e:
        build(BuildConfig(export_dir=str(fresh_export), out=str(tmp_path / "b"), target_fps=20_000), steps=steps, **QUIET)
    msg = str(e.value)
    assert "step_verify_folded" in msg and "first diverging node Pool_hls_0" in msg
    assert "'PE': 64" in msg and "'ConvolutionInputGenerator_rtl_1': {'SIMD': 8" in msg
    assert (e.value.work / "intermediate_models" / "05_step_folding_unchecked.onnx").is_file()
    assert not (tmp_path / "b").exists()


def test_a_folding_file_breaking_a_rule_is_refused_before_the_first_step(tmp_path, fresh_export, fresh_build):
    bad = _mismatched_folding(fresh_build, tmp_path / "mismatched.json")
    r = subprocess.run([sys.executable, "-m", "build", "--export", str(fresh_export), "--out", str(tmp_path / "b"),
                        "--folding", str(bad)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2 and "[1/" not in r.stdout
    err = r.stderr.strip().splitlines()[-1]
    assert err.startswith(f"error: {bad}: ConvolutionInputGenerator_rtl_1: SIMD 8 differs from Pool_hls_0's PE 64")
    assert err.endswith("(depthwise pair) (and 6 more)")
    assert sorted(os.listdir(tmp_path)) == ["mismatched.json"]
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"Defaults": {}, "MatrixVectorActivation_0": {"PE": 4, "SIMD": 6},  # finn-examples'
                                   "StreamingMaxPool_Batch_0": {}, "MVAU_hls_0": {"PE": 1}}))
    with pytest.raises(ValueError, match=f"{unknown}: no node named MatrixVectorActivation_0, StreamingMaxPool_Batch_0 "
                                         r"in this graph \(2 of 3 entries match no node.*layers are FMPadding_rtl_0, "):
        build(BuildConfig(export_dir=str(fresh_export), out=str(tmp_path / "c"), folding=str(unknown)), **QUIET)
    unknown.write_text("{not json")
    with pytest.raises(ValueError, match=f"{unknown}: not a readable folding JSON"):
        build(BuildConfig(export_dir=str(fresh_export), out=str(tmp_path / "c"), folding=str(unknown)), **QUIET)


def test_each_folding_rule_is_checked(fresh_build):
    from qonnx.custom_op.registry import getCustomOp

    from build.folding_rules import violations

    m = _model(fresh_build / "model_dataflow.onnx")
    node = {n.name: getCustomOp(n) for n in m.graph.node}

    def broken(name, **attrs):
        old = {k: node[name].get_nodeattr(k) for k in attrs}
        for k, v in attrs.items():
            node[name].set_nodeattr(k, v)
        found = [(x.node, x.rule) for x in violations(m)]
        for k, v in old.items():
            node[name].set_nodeattr(k, v)
        return found

    assert broken("MVAU_hls_1", PE=5) == [("MVAU_hls_1", "divides")]
    assert broken("Pool_hls_0", PE=5) == [("ConvolutionInputGenerator_rtl_1", "depthwise pair"),
                                          ("Pool_hls_0", "divides")]
    assert broken("ConvolutionInputGenerator_rtl_2", SIMD=2, parallel_window=1) == \
        [("ConvolutionInputGenerator_rtl_2", "parallel window")]
    assert broken("ConvolutionInputGenerator_rtl_1", parallel_window=1) == \
        [("ConvolutionInputGenerator_rtl_1", "parallel window")]
    mw, mh = node["MVAU_hls_1"].get_nodeattr("MW"), node["MVAU_hls_1"].get_nodeattr("MH")
    assert broken("MVAU_hls_1", PE=mh, SIMD=mw) == [("MVAU_hls_1", "stream width")]  # 64 x 192 x 4-bit weights
    assert violations(m) == []


def test_the_search_never_picks_an_illegal_setting(fresh_build):
    from build.boards import board
    from build.folding import candidates
    from build.folding_rules import violations

    m = _model(fresh_build / "model_dataflow.onnx")
    cands = candidates(m, board("ZCU104").part)
    assert any("+" in unit for unit in cands) and len(cands) == len(m.graph.node) - 7  # 7 generator+pool units
    from qonnx.custom_op.registry import getCustomOp

    ops = {n.name: getCustomOp(n) for n in m.graph.node}
    checked = 0
    for unit in ("MVAU_hls_1", "ConvolutionInputGenerator_rtl_1+Pool_hls_0", "ConvolutionInputGenerator_rtl_2"):
        for setting, *_ in cands[unit]:
            for name, attrs in setting.items():
                for k, v in attrs.items():
                    ops[name].set_nodeattr(k, v)
            assert violations(m) == [], (unit, setting)
            checked += 1
    assert checked > 50


def test_cppsim_without_the_tools_says_which_are_missing_and_records_the_skip(tmp_path, monkeypatch, fresh_export):
    monkeypatch.setenv("XILINX_HLS", str(tmp_path / "no-vitis-hls"))
    lines = []
    out = build(BuildConfig(export_dir=str(fresh_export), out=str(tmp_path / "b"), target_fps=20_000, cppsim=True,
                            verify_frames=1), log=lines.append)
    r = json.loads((out / "build_report.json").read_text())
    assert r["cppsim"]["ran"] is False and r["folded_verification"]["frames"] == 1
    assert any("Vitis HLS headers" in m for m in r["cppsim"]["missing"])
    assert any(line.startswith("  cppsim skipped: it needs Vitis HLS headers") for line in lines)


def test_bitfile_builds_turn_on_finn_folded_cppsim_and_stitched_rtlsim_unless_opted_out():
    prepare()
    from finn.builder.build_dataflow_config import VerificationStepType as V

    from build.flow import finn_verify_steps

    assert finn_verify_steps(BuildConfig()) == [V.STREAMLINED_PYTHON]
    assert finn_verify_steps(BuildConfig(bitfile=True)) == [V.STREAMLINED_PYTHON, V.FOLDED_HLS_CPPSIM,
                                                            V.STITCHED_IP_RTLSIM]
    assert finn_verify_steps(BuildConfig(bitfile=True, finn_verify=False)) == [V.STREAMLINED_PYTHON]
