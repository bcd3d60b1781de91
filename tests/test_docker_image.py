"""The bitstream image of docker/: built from docker/Dockerfile with buildah, then used up to Vivado.

No Docker engine runs on these machines; buildah (vfs storage, chroot isolation) builds the same
Dockerfile. The base image is a Debian bookworm made here with debootstrap (with Python 3.11, as
python:3.11-slim-bookworm has) and passed as BASE_IMAGE; torch's CPU wheel is taken from the
host's pip (`pip download torch==2.13.0`, which here resolves to a local +cpu wheel) through a
mounted directory and TORCH_PIP_ARGS; GitHub is unreachable, so FETCH_FINN_DEPS=0 skips the only
step that needs it. Inside the image: the imports, `python -m build --codegen` on a small export,
docker/build_bitfile.sh up to its Vivado check, `python -m driver.validate --emulate`, the CMake/
Boost/OpenMP build FINN's FIFO-sizing simulator needs, and fetch-deps without Vivado or a terminal.

Slow (a fresh image build takes a quarter of an hour or more on 2 cores): it runs when
AMC_IMAGE_TEST=1, which .ci/run sets for a second pytest run after the default suite.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASE = "localhost/amc-test-base:bookworm"
IMAGE = "localhost/amc-finn:test"
BUILDAH = ["buildah", "--storage-driver", "vfs"]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.environ.get("AMC_IMAGE_TEST") != "1",
                                 reason="builds the Docker image with buildah (long): AMC_IMAGE_TEST=1 runs it")]


def _run(cmd, timeout=600, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _base_image(tmp: Path) -> None:
    """Debian bookworm + python3/python3-venv as a local image (python:3.11-slim-bookworm's stand-in)."""
    if subprocess.run(BUILDAH + ["inspect", BASE], capture_output=True).returncode == 0:
        return
    rootfs = tmp / "rootfs"
    _run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv", "bookworm", str(rootfs),
          "http://deb.debian.org/debian"], timeout=1200)
    ctr = _run(BUILDAH + ["from", "scratch"]).stdout.strip()
    try:
        mnt = _run(BUILDAH + ["mount", ctr]).stdout.strip()
        _run(["cp", "-a", f"{rootfs}/.", mnt])
        _run(BUILDAH + ["umount", ctr])
        _run(BUILDAH + ["commit", "-q", ctr, BASE])
    finally:
        subprocess.run(BUILDAH + ["rm", ctr], capture_output=True)
        shutil.rmtree(rootfs, ignore_errors=True)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    for tool in ("buildah", "debootstrap"):
        assert shutil.which(tool), f"{tool} missing: apt-get install buildah debootstrap (.ci/run does)"
    tmp = tmp_path_factory.mktemp("image")
    _base_image(tmp)
    wheels = tmp / "wheels"
    _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), "torch==2.13.0"], timeout=1800)
    (wheel,) = wheels.glob("torch-*.whl")
    assert "+cpu" in wheel.name, f"{wheel.name}: not the CPU build"
    t = time.monotonic()
    _run(BUILDAH + ["bud", "--isolation", "chroot", "-f", "docker/Dockerfile", "-t", IMAGE,
                    "--build-arg", f"BASE_IMAGE={BASE}", "--build-arg", "FETCH_FINN_DEPS=0",
                    "--build-arg", "TORCH_PIP_ARGS=--find-links /run/wheels",
                    "--build-arg", "PIP_CERT=/run/hostca.crt",
                    "-v", "/etc/ssl/certs/ca-certificates.crt:/run/hostca.crt:ro", "-v", f"{wheels}:/run/wheels:ro",
                    "."], cwd=ROOT, timeout=3600)
    print(f"\nimage built in {time.monotonic() - t:.0f} s")
    ctr = _run(BUILDAH + ["from", IMAGE]).stdout.strip()
    yield ctr
    subprocess.run(BUILDAH + ["rm", ctr], capture_output=True)
    subprocess.run(BUILDAH + ["rmi", IMAGE], capture_output=True)  # 3.6 GB; the base image is kept for reruns


@pytest.fixture(scope="module")
def work(tmp_path_factory, small_file):
    """Host directory mounted at /work/out: a small export and the data file."""
    from export.config import ExportConfig
    from export.to_finn import export

    w = tmp_path_factory.mktemp("work")
    export(ExportConfig(fresh_bits=4, out=str(w / "export"), data=str(small_file), check_frames=2), log=lambda *_: None)
    shutil.copy(small_file, w / "small.hdf5")
    return w


def _inside(ctr, work, script, env=None, timeout=1200):
    cmd = BUILDAH + ["run", "--isolation", "chroot", "-v", f"{work}:/work/out"]
    for k, v in (env or {}).items():
        cmd += ["--env", f"{k}={v}"]
    return subprocess.run(cmd + [ctr, "--", "bash", "-c", script], capture_output=True, text=True, timeout=timeout)


def test_image_has_the_pinned_environment(image, work):
    r = _inside(image, work, "cd /opt/amc && python -c 'import torch, brevitas, qonnx, onnxruntime, numpy\n"
                             "import export.finn_env; export.finn_env.prepare()\n"
                             "import finn.builder.build_dataflow_steps\n"
                             "import radioml.dataset, train.model, export.to_finn, build.flow, driver.validate\n"
                             "print(torch.__version__, brevitas.__version__, numpy.__version__)' && "
                             "python -m pip show finn-plus | sed -n 2p && command -v g++ cmake")
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.split("\n")
    assert lines[0].split()[:2] == ["2.13.0+cpu", "0.13.4"] and lines[1] == "Version: 1.6.1"
    assert lines[2] == "/usr/bin/g++" and lines[3] == "/opt/venv/bin/cmake"


def test_codegen_build_and_emulated_validation_inside(image, work):
    r = _inside(image, work, "cd /tmp && python -m build --export /work/out/export --out /work/out/cg "
                             "--board ZCU104 --target-fps 20000 --codegen --force")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    rep = json.loads((work / "cg/build_report.json").read_text())
    assert rep["verification"] == {"streamlined_python": "SUCCESS", "hw_layers_python": "SUCCESS"}
    gen = list((work / "cg/finn_build").glob("code_gen_ipgen_*"))
    assert len(gen) >= 20 and all(any(d.iterdir()) for d in gen)
    io = json.loads((work / "cg/driver_io.json").read_text())
    assert io["export_dir"] == "../export"
    r = _inside(image, work, "cd /tmp && python -m driver.validate --bundle /work/out/cg --data /work/out/small.hdf5 "
                             "--emulate --batch-size 64 --out /work/out/val.json")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    m = json.loads((work / "val.json").read_text())
    assert m["frames"] == 624 and m["emulated"] is True and r.stdout.startswith("emulated accelerator: 624 test frames")


def test_entry_script_stops_at_its_vivado_check(image, work):
    r = _inside(image, work, "/opt/amc/docker/build_bitfile.sh /work/out/export /work/out/bit")
    assert r.returncode == 2 and "XILINX_VIVADO must point at a Vivado installation" in r.stderr
    r = _inside(image, work, "/opt/amc/docker/build_bitfile.sh /work/out/export /work/out/bit",
                env={"XILINX_VIVADO": "/tools/Xilinx/Vivado/2024.2"})
    assert r.returncode == 2 and "XILINX_VIVADO must point at a Vivado installation" in r.stderr
    assert not (work / "bit").exists()


def test_fifo_sizing_toolchain_and_fetch_deps_without_vivado(image, work):
    """finn_xsi's CMake needs Boost program_options, OpenMP, threads; fetch-deps runs without Vivado or a tty."""
    cmk = work / "cmk"
    cmk.mkdir(exist_ok=True)
    (cmk / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.11)\nproject(po CXX)\nset(CMAKE_CXX_STANDARD 20)\n"
        "find_package(Threads REQUIRED)\nfind_package(OpenMP REQUIRED)\n"
        "find_package(Boost COMPONENTS program_options REQUIRED)\nadd_executable(po po.cpp)\n"
        "target_link_libraries(po Boost::program_options OpenMP::OpenMP_CXX Threads::Threads)\n")
    (cmk / "po.cpp").write_text(
        "#include <boost/program_options.hpp>\n#include <iostream>\nnamespace po = boost::program_options;\n"
        "int main(int c, char** v) { po::options_description d(\"o\"); d.add_options()(\"n\", po::value<int>());\n"
        "po::variables_map m; po::store(po::parse_command_line(c, v, d), m); std::cout << m[\"n\"].as<int>() * 2;}\n")
    (work / "deps.yaml").write_text("git_deps: {}\nboardfile_deps: {}\ndirect_download_deps: {}\n")
    r = _inside(image, work, "cmake -S /work/out/cmk -B /tmp/po >/dev/null && cmake --build /tmp/po >/dev/null && "
                             "/tmp/po/po --n 21 && echo && cd /opt/amc && "
                             "python -m export.finn_env fetch-deps /tmp/deps --definitions /work/out/deps.yaml "
                             "</dev/null")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert r.stdout.split("\n")[0] == "42" and "finn-plus dependencies in /tmp/deps" in r.stdout
