"""FINN build: estimate flow on an exported 4-bit VGG10, board configs, folding search, Vivado-only steps."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from build.boards import BOARDS
from build.config import BuildConfig
from export.finn_env import XilinxToolMissing, prepare
from build.flow import build

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def export_dir(fresh_export):
    return fresh_export


@pytest.fixture
def built(fresh_build):
    """The comparison build: --fit lut (fewest LUT, FINN's own specialisation)."""
    return fresh_build


def test_estimate_build_writes_reports(built):
    r = json.loads((built / "build_report.json").read_text())
    assert r["verification"] == {"streamlined_python": "SUCCESS", "hw_layers_python": "SUCCESS"}
    assert r["board"]["part"] == "xczu7ev-ffvc1156-2-e" and r["clock_ns"] == 4.0
    assert r["estimated_fps"] == pytest.approx(1e9 / 4.0 / r["max_cycles"])
    assert r["estimated_latency_us"] > 0 and r["resources"]["LUT"] > 1000
    assert r["fits"] == all(u <= 1 for u in r["utilisation"].values())
    mvaus = [layer for layer in r["layers"] if layer["node"].startswith("MVAU")]
    assert len(mvaus) == 10  # 7 conv + 3 dense
    io = r["io_shape_dict"]
    assert io["idt"] == ["INT4"] and io["ishape_normal"] == [[1, 1024, 1, 2]] and io["oshape_normal"][0][-1] == 24
    for name in ("estimate_layer_cycles.json", "estimate_layer_resources.json", "estimate_network_performance.json"):
        assert (built / "report" / name).exists()
    assert (built / "folding_config.json").exists() and (built / "model_dataflow.onnx").exists()


def test_folding_search_meets_target_with_no_more_luts_than_finn(tmp_path, export_dir, built):
    ours = json.loads((built / "build_report.json").read_text())
    assert ours["meets_target"] and ours["folding_search"]["met"] and ours["folded_verification"]["ok"]
    target_cycles = ours["folding_search"]["target_cycles"]
    assert all(layer["cycles"] <= target_cycles for layer in ours["layers"])
    finn = build(BuildConfig(export_dir=str(export_dir), out=str(tmp_path / "finn"), target_fps=20_000, folding="finn"),
                 log=lambda *_: None)
    theirs = json.loads((finn / "build_report.json").read_text())
    assert theirs["meets_target"] and theirs["folded_verification"]["ok"]  # both legal and both meet the target:
    assert ours["resources"]["LUT"] <= theirs["resources"]["LUT"]  # then the exact search is never larger
    # the written folding JSON feeds back and reproduces the same build
    again = build(BuildConfig(export_dir=str(export_dir), out=str(tmp_path / "again"), target_fps=20_000,
                              folding=str(built / "folding_config.json")), log=lambda *_: None)
    r = json.loads((again / "build_report.json").read_text())
    assert r["max_cycles"] == ours["max_cycles"] and r["resources"] == ours["resources"]


def test_board_configs_match_finn_part_maps():
    prepare()
    from finn.util.basic import alveo_part_map, pynq_part_map

    assert set(BOARDS) == {"ZCU104", "RFSoC2x2", "Pynq-Z2", "U250"}
    for name, b in BOARDS.items():
        part_map = alveo_part_map if b.shell == "vitis_alveo" else pynq_part_map
        assert part_map[name] == b.part, name
        assert b.lut > 0 and b.bram_18k > 0 and b.dsp > 0 and b.clock_ns > 0


def test_vivado_steps_fail_with_a_clear_message(tmp_path, export_dir):
    r = subprocess.run([sys.executable, "-m", "build", "--export", str(export_dir), "--out", str(tmp_path / "bit"),
                        "--bitfile", "--target-fps", "1000"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2
    assert "needs Vivado" in r.stderr and "docker/" in r.stderr
    assert not (tmp_path / "bit").exists() and os.listdir(tmp_path) == []
    prepare()
    import finn.xsi

    with pytest.raises(XilinxToolMissing, match="needs Vivado"):
        finn.xsi.compile_sim_obj("top", [], ".")


def test_bad_export_dir_is_named(tmp_path):
    with pytest.raises(ValueError, match="not an export directory"):
        build(BuildConfig(export_dir=str(tmp_path), out=str(tmp_path / "b")), log=lambda *_: None)
    assert not (tmp_path / "b").exists()


def test_dockerfile_and_entry_script_lint_clean_and_script_runs_to_vivado_check(tmp_path):
    bindir = Path(sys.executable).parent
    for tool, target in (("hadolint", "docker/Dockerfile"), ("shellcheck", "docker/build_bitfile.sh")):
        r = subprocess.run([str(bindir / tool), str(ROOT / target)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("XILINX")}
    r = subprocess.run(["bash", str(ROOT / "docker/build_bitfile.sh"), "exp", str(tmp_path / "o")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "XILINX_VIVADO must point at a Vivado installation" in r.stderr
    text = (ROOT / "docker/Dockerfile").read_text()
    assert "torch==2.13.0" in text and "--no-deps -r requirements-finn.txt" in text
    runs = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert any("python -m export.finn_env fetch-deps" in line for line in runs)
    assert not any("finn deps" in line for line in runs)  # wizard + XSI build: needs a tty and Vivado
    # every COPY source is in the tree and let through by .dockerignore (which ignores everything else)
    allowed = {line[1:] for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    sources = [src for line in runs if line.startswith("COPY ") for src in line.split()[1:-1]]
    assert "radioml" in sources and "docker/build_bitfile.sh" in sources
    for src in sources:
        assert (ROOT / src).exists(), src
        assert any(src == a or src.startswith(a + "/") for a in allowed), f"{src} is excluded by .dockerignore"


# -- the bitfile path (issue 10): what can be checked without Vivado ------------------------------------
def test_codegen_generates_hls_and_rtl_sources_for_every_layer_on_the_host(tmp_path, export_dir):
    out = build(BuildConfig(export_dir=str(export_dir), out=str(tmp_path / "cg"), target_fps=20_000, codegen=True),
                log=lambda *_: None)
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    model = ModelWrapper(str(out / "model_dataflow.onnx"))
    assert len(model.graph.node) >= 20
    for node in model.graph.node:
        gen = getCustomOp(node).get_nodeattr("code_gen_dir_ipgen")
        where = Path(gen)  # inside the published build (its work directory was renamed into place)
        assert where.is_dir() and where.is_relative_to((out / "finn_build").resolve()), (node.name, gen)
        files = {p.suffix for p in where.iterdir()}
        if node.op_type.endswith("_hls"):
            assert ".cpp" in files and ".tcl" in files, (node.name, files)
            tcl = next(where.glob("hls_syn_*.tcl")).read_text()
            assert "$::env(FINN_CUSTOM_HLS)" in tcl  # read when Vitis HLS runs: prepare() sets it
        else:
            assert files & {".v", ".sv"}, (node.name, files)
    prepare()  # later FINN work in this process must not recreate the renamed work directory
    assert not list(tmp_path.glob(".cg.tmp*")) and str(tmp_path) not in os.environ["FINN_BUILD_DIR"]


def test_prepare_sets_finn_environment_like_finn_cli(tmp_path, monkeypatch):
    from finn.util.basic import make_build_dir
    from finn.util.settings import get_settings

    from export.finn_env import prepare

    monkeypatch.delenv("XILINX_LOCAL_USER_DATA", raising=False)
    d = prepare(tmp_path / "fb")
    assert d == tmp_path / "fb" and d.is_dir() and os.environ["FINN_BUILD_DIR"] == str(d)
    assert get_settings().finn_build_dir == d and Path(make_build_dir("x_")).parent == d
    assert Path(os.environ["FINN_CUSTOM_HLS"], "lookup.hpp").is_file()  # FINN's custom_hls headers
    assert Path(os.environ["FINN_RTLLIB"], "fifo/hdl/fifo.sv").is_file()
    assert os.environ["XILINX_LOCAL_USER_DATA"] == "no"
    vivado = tmp_path / "Xilinx/Vivado/2024.2"
    vivado.mkdir(parents=True)
    env = {**os.environ, "XILINX_VIVADO": str(vivado), "XILINX_HLS": str(tmp_path / "Xilinx/Vitis/2024.2"),
           "LD_LIBRARY_PATH": "/usr/local/lib", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "export.finn_env", "ld-library-path"], capture_output=True, text=True,
                       env=env)
    assert r.stdout.strip().split(":") == ["/lib/x86_64-linux-gnu/", f"{vivado}/lib/lnx64.o",
                                           f"{tmp_path}/Xilinx/Vitis/2024.2/lnx64/tools/fpo_v7_1", "/usr/local/lib"]
    prepare(tmp_path / "fb")  # back to this session's settings for the other tests


def test_fetch_deps_runs_without_vivado_or_a_terminal(tmp_path):
    defs = tmp_path / "deps.yaml"
    defs.write_text("git_deps: {}\nboardfile_deps: {}\ndirect_download_deps: {}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XILINX", "FINN"))}
    env.update(PYTHONPATH=str(ROOT), FINN_SETTINGS=str(tmp_path / "no-settings.yaml"), HOME=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "export.finn_env", "fetch-deps", str(tmp_path / "deps"),
                        "--definitions", str(defs)], capture_output=True, text=True, env=env,
                       stdin=subprocess.DEVNULL, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"finn-plus dependencies in {tmp_path / 'deps'}" in r.stdout and (tmp_path / "deps").is_dir()
    # FINN's own command, as the old Dockerfile ran it, fails both ways
    finn = Path(sys.executable).parent / "finn"
    r = subprocess.run([str(finn), "deps", "update", str(tmp_path / "d2")], capture_output=True, text=True, env=env,
                       stdin=subprocess.DEVNULL, timeout=120)
    assert "unexpected extra argument" in r.stdout + r.stderr


def _as_after_zynq_build(model_path, part_dir):
    """The parent graph ZynqBuild leaves: its graph transforms before Vivado, MakeZYNQProject's names."""
    from finn.transformation.fpgadataflow.create_dataflow_partition import CreateDataflowPartition
    from finn.transformation.fpgadataflow.floorplan import Floorplan
    from finn.transformation.fpgadataflow.insert_dwc import InsertDWC
    from finn.transformation.fpgadataflow.insert_iodma import InsertIODMA
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp
    from qonnx.transformation.general import GiveReadableTensorNames, GiveUniqueNodeNames

    model = ModelWrapper(str(model_path))
    for t in (InsertIODMA(64), InsertDWC(), SpecializeLayers("xczu7ev-ffvc1156-2-e"), Floorplan(),
              CreateDataflowPartition(partition_model_dir=str(part_dir))):
        model = model.transform(t).transform(GiveUniqueNodeNames()).transform(GiveReadableTensorNames())
    sdps = model.get_nodes_by_op_type("StreamingDataflowPartition")
    getCustomOp(sdps[0]).set_nodeattr("instance_name", "idma0")
    getCustomOp(sdps[-1]).set_nodeattr("instance_name", "odma0")
    return model


def test_io_shapes_after_synthesis_come_from_finn_get_driver_shapes(tmp_path, built):
    prepare()
    from build.report import io_shapes

    estimate = json.loads((built / "build_report.json").read_text())["io_shape_dict"]
    model = _as_after_zynq_build(built / "model_dataflow.onnx", tmp_path / "parts")
    assert model.graph.node[0].op_type == "StreamingDataflowPartition"
    after = io_shapes(model)
    assert after == estimate and after["idma_names"] == ["idma0"] and after["odma_names"] == ["odma0"]
    assert after["idt"] == ["INT4"] and after["ishape_packed"] == [[1, 1024, 1, 1, 1]]
    alveo = io_shapes(model, alveo=True)
    assert alveo["idma_names"] == ["idma_0"] and alveo["odma_names"] == ["odma_0"]


def test_a_failed_step_keeps_the_work_directory_and_names_it(tmp_path, export_dir):
    from build.flow import BuildFailed, step_load

    def step_synth(model, ctx):
        (ctx.work / "finn_build" / "vivado_zynq_proj_x").mkdir(parents=True)
        (ctx.work / "finn_build" / "vivado_zynq_proj_x" / "vivado.log").write_text("ERROR: [Place 30-640] ...")
        raise AttributeError("'StreamingDataflowPartition' object has no attribute 'get_input_datatype'")

    with pytest.raises(BuildFailed) as e:
        build(BuildConfig(export_dir=str(export_dir), out=str(tmp_path / "b")), steps=[step_load, step_synth],
              log=lambda *_: None)
    work = e.value.work
    assert str(work) in str(e.value) and "step_synth" in str(e.value) and "AttributeError" in str(e.value)
    assert (work / "finn_build/vivado_zynq_proj_x/vivado.log").read_text().startswith("ERROR")
    assert (work / "intermediate_models/01_step_load.onnx").is_file() and not (tmp_path / "b").exists()
    r = subprocess.run([sys.executable, "-m", "build", "--export", str(tmp_path / "nothing"), "--out",
                        str(tmp_path / "c")], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2 and "not an export directory" in r.stderr and not list(tmp_path.glob(".c.tmp*"))


def test_bitfile_steps_are_finn_default_flow_with_prepare_synthesis():
    prepare()
    from finn.builder.build_dataflow_config import default_build_dataflow_steps

    from build.flow import BITFILE_STEPS

    assert "step_prepare_synthesis" in BITFILE_STEPS
    pos = [default_build_dataflow_steps.index(s) for s in BITFILE_STEPS]
    assert pos == sorted(pos) and BITFILE_STEPS[-1] == default_build_dataflow_steps[-1]


def test_alveo_needs_platform_and_xrt_and_names_finn_xclbin(tmp_path, monkeypatch, built):
    from build.flow import Ctx, _write_driver_io, require_alveo_platform

    plat = BOARDS["U250"].vitis_platform
    monkeypatch.setenv("PLATFORM_REPO_PATHS", str(tmp_path / "platforms"))
    monkeypatch.delenv("XILINX_XRT", raising=False)
    with pytest.raises(XilinxToolMissing, match=f"PLATFORM_REPO_PATHS .* has no {plat}/"):
        require_alveo_platform(plat)
    (tmp_path / "platforms" / plat).mkdir(parents=True)
    with pytest.raises(XilinxToolMissing, match="needs XRT"):
        require_alveo_platform(plat)
    monkeypatch.setenv("XILINX_XRT", str(tmp_path))
    require_alveo_platform(plat)
    work = tmp_path / "work"
    (work / "bitfile").mkdir(parents=True)
    (work / "bitfile/finn-accel-0.xclbin").write_bytes(b"x")  # what FINN's copy_and_rename_bitfiles writes
    rep = json.loads((built / "build_report.json").read_text())
    cfg = json.loads((built / "driver_io.json").read_text())
    ctx = Ctx(BuildConfig(export_dir=str(built / cfg["export_dir"]), board="U250", bitfile=True), BOARDS["U250"], work)
    _write_driver_io(work, tmp_path / "out", rep, ctx)
    io = json.loads((work / "driver_io.json").read_text())
    assert io["bitfile"] == "bitfile/finn-accel-0.xclbin" and io["platform"] == "alveo"


def test_runtime_writable_weights_are_refused_with_a_clear_message(built):
    prepare()
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from build.flow import refuse_runtime_weights

    model = ModelWrapper(str(built / "model_dataflow.onnx"))
    refuse_runtime_weights(model)  # the built model has none
    mvau = next(n for n in model.graph.node if n.op_type.startswith("MVAU"))
    getCustomOp(mvau).set_nodeattr("ram_style", "ultra")
    with pytest.raises(ValueError, match=f"{mvau.name}: runtime-writable weights .* not supported by driver/"):
        refuse_runtime_weights(model)


@pytest.fixture(scope="module")
def standalone_build(tmp_path_factory, fresh_export):
    """fresh_export at 20,000 frames/s with standalone thresholds (so FINN makes every MVAU RTL)."""
    return build(BuildConfig(export_dir=str(fresh_export), out=str(tmp_path_factory.mktemp("st") / "st"),
                             target_fps=20_000, standalone_thresholds=True, fit="lut", impl="finn"),
                 log=lambda *_: None)


def test_standalone_thresholds_give_rtl_mvaus_and_the_folded_graph_stays_bit_exact(standalone_build, built):
    """FINN's standalone_thresholds passed through: thresholds become their own layers, MVAUs RTL (DSP-based)."""
    r = json.loads((standalone_build / "build_report.json").read_text())
    kinds = {layer["node"].rsplit("_", 1)[0] for layer in r["layers"]}
    assert {"MVAU_rtl", "Thresholding_rtl"} <= kinds and "MVAU_hls" not in kinds
    assert r["folded_verification"]["ok"] and r["meets_target"]
    default = json.loads((built / "build_report.json").read_text())
    assert r["resources"]["DSP"] > default["resources"]["DSP"] and r["resources"]["LUT"] < default["resources"]["LUT"]
    assert r["inputs"]["standalone_thresholds"] is True and default["inputs"]["standalone_thresholds"] is False


def test_a_specialize_layers_json_is_applied_and_unknown_nodes_are_refused(tmp_path, export_dir):
    """FINN's specialize-layers JSON passed through (the last MVAU as HLS instead of RTL); a node named that this
    graph lacks, or a variant FINN cannot make (it would fall back with a warning), is refused."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"MVAU_9": {"preferred_impl_style": "hls"}}))
    out = build(BuildConfig(export_dir=str(export_dir), out=str(tmp_path / "b"), target_fps=20_000,
                            specialize_layers=str(spec)), log=lambda *_: None)
    r = json.loads((out / "build_report.json").read_text())
    mvaus = [layer["node"] for layer in r["layers"] if layer["node"].startswith("MVAU")]
    assert len(mvaus) == 10 and all(n.startswith("MVAU_hls") for n in mvaus), mvaus
    assert r["folded_verification"]["ok"] and r["inputs"]["specialize_layers"].startswith("file:")
    for bad, msg in (({"MVAU_99": {"preferred_impl_style": "rtl"}}, "no node named MVAU_99 before specialisation"),
                     ({"FMPadding_0": {"preferred_impl_style": "hls"}},
                      r"FINN has no such variant of FMPadding_0 \(hls asked, FINN made FMPadding_rtl\)")):
        spec.write_text(json.dumps(bad))
        with pytest.raises(Exception, match=msg):
            build(BuildConfig(export_dir=str(export_dir), out=str(tmp_path / "c"), target_fps=20_000,
                              specialize_layers=str(spec)), log=lambda *_: None)


def test_the_max_utilisation_fit_never_fills_the_part_more_than_the_lut_search(tmp_path, export_dir, built):
    """--fit max-utilisation: its largest LUT/BRAM18/DSP fraction is at most the LUT search's, its LUTs at least
    the LUT search's (which are minimal), and its folded graph is bit-exact like every build's."""
    from build.boards import board

    cap = board("ZCU104").resources()
    worst = lambda t: max(t[k] / cap[k] for k in ("LUT", "BRAM_18K", "DSP"))  # noqa: E731
    lut = json.loads((built / "build_report.json").read_text())["folding_search"]
    out = build(BuildConfig(export_dir=str(export_dir), out=str(tmp_path / "fit"), target_fps=20_000,
                            fit="max-utilisation", impl="finn"), log=lambda *_: None)
    r = json.loads((out / "build_report.json").read_text())
    fit = r["folding_search"]
    assert fit["objective"] == "max-utilisation" and lut["objective"] == "lut"
    assert r["meets_target"] and fit["met"] and r["folded_verification"]["ok"]
    assert worst(fit["totals"]) <= worst(lut["totals"]) + 1e-12 and fit["totals"]["LUT"] >= lut["totals"]["LUT"]


def test_impl_search_fills_the_part_no_more_than_every_layer_rtl_and_builds_the_mix_it_chose(tmp_path, export_dir,
                                                                                            standalone_build):
    """--impl search, the default under the default --fit max-utilisation: every MVAU and thresholding layer HLS or
    RTL, fitted with its folding; FINN's all-RTL build at the same rate is one of its options, so the search's
    largest share of the part is at most that one's; the styles it chose are the styles built, and the folded mix
    is bit-exact like every build."""
    from build.boards import board

    cap = board("ZCU104").resources()
    worst = lambda t: max(t[k] / cap[k] for k in ("LUT", "BRAM_18K", "DSP"))  # noqa: E731
    out = build(BuildConfig(export_dir=str(export_dir), out=str(tmp_path / "mix"), target_fps=20_000),
                log=lambda *_: None)  # the defaults
    r = json.loads((out / "build_report.json").read_text())
    rtl = json.loads((standalone_build / "build_report.json").read_text())
    assert r["inputs"]["fit"] == "max-utilisation" and r["folding_search"]["objective"] == "max-utilisation"
    assert r["inputs"]["impl"] == "search" and r["inputs"]["standalone_thresholds"] is True
    assert r["meets_target"] and r["folding_search"]["met"] and r["folded_verification"]["ok"]
    assert worst(r["folding_search"]["totals"]) <= worst(rtl["folding_search"]["totals"]) + 1e-12
    chosen = r["impl_search"]
    built_as = [layer["node"].rsplit("_", 2)[:2] for layer in r["layers"]]
    for kind in ("MVAU", "Thresholding"):
        for style in ("hls", "rtl"):
            assert sum(n.startswith(kind + "_") for n in chosen[style]) == built_as.count([kind, style]), (kind, style)
    assert sum(k == "MVAU" for k, _ in built_as) == 10
    style = {**{n: "hls" for n in chosen["hls"]}, **{n: "rtl" for n in chosen["rtl"]}}
    names = {layer["node"] for layer in r["layers"]}
    assert set(chosen["nodes"]) == set(style)  # each chosen layer names the report row it became
    assert all(final in names and final.rsplit("_", 2)[1] == style[plain] for plain, final in chosen["nodes"].items())
    spec = json.loads((out / "specialize_layers.json").read_text())  # what FINN's step was given
    assert {n: c["preferred_impl_style"] for n, c in spec.items()} == {
        **{n: "hls" for n in chosen["hls"]}, **{n: "rtl" for n in chosen["rtl"]}}

