"""FINN's environment: the one place that sets it, the same in the Docker image and on a host.

finn-plus expects its own CLI (`finn build`, finn/interface/run_finn.py) to have prepared the
process; this project calls FINN's builder steps directly, so `prepare()` does what that CLI's
`prepare_finn` does, minus the interactive parts:

* FINN_BUILD_DIR set and created (FINN's `make_build_dir` raises if it is missing; its default
  is $CWD/FINN_TMP), and FINN's settings object pointed at it;
* FINN_CUSTOM_HLS and FINN_RTLLIB (read by FINN's HLS IP-generation Tcl and RTL templates);
* XILINX_LOCAL_USER_DATA=no (Vivado's Tcl store otherwise writes into $HOME);
* LD_LIBRARY_PATH with $XILINX_VIVADO/lib/lnx64.o (and Vitis HLS' fpo library) for the
  simulators FINN starts; for this process it must be set before Python starts, which
  docker/build_bitfile.sh does (`python -m export.finn_env ld-library-path` prints it).

Without Vivado (estimates and HLS/RTL code generation need none) it sets a placeholder
XILINX_VIVADO, which finn-plus reads at import time, and binds the XSI simulator names to stubs
that fail, if a step ever calls them, with a message naming the missing tool.

`python -m export.finn_env fetch-deps DIR` fetches finn-plus's external dependencies (finn-hlslib,
board files, ...) without `finn deps update`, which starts a wizard without a settings file and
then builds the XSI simulator, which needs Vivado: the image fetches them before Vivado is mounted.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

PLACEHOLDER = "/opt/Xilinx/Vivado/2024.2-not-installed"


class XilinxToolMissing(RuntimeError):
    """A build step needs Vivado/Vitis, which this machine does not have."""


def vivado_available() -> bool:
    v = os.environ.get("XILINX_VIVADO")
    return bool(v) and v != PLACEHOLDER and os.path.isdir(v)


def require_vivado(step: str) -> None:
    if not vivado_available():
        raise XilinxToolMissing(
            f"{step} needs Vivado (XILINX_VIVADO is {os.environ.get('XILINX_VIVADO') or 'unset'}): "
            f"run it in the Docker image of docker/ with the Xilinx tools mounted")


def default_build_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"amc-finn-build-{os.getuid()}"


def ld_library_paths() -> list[str]:
    """The library directories FINN's CLI puts on LD_LIBRARY_PATH (run_finn.xilinx_ld_library_paths)."""
    if not vivado_available():
        return []
    paths = ["/lib/x86_64-linux-gnu/", f"{os.environ['XILINX_VIVADO']}/lib/lnx64.o"]
    if os.environ.get("XILINX_HLS"):
        paths.append(f"{os.environ['XILINX_HLS']}/lnx64/tools/fpo_v7_1")
    return paths


def ld_library_path() -> str:
    """LD_LIBRARY_PATH with the Xilinx library directories in front (unchanged without Vivado)."""
    current = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    return os.pathsep.join([p for p in ld_library_paths() if p not in current] + current)


def prepare(build_dir: str | os.PathLike | None = None) -> Path:
    """Set FINN's environment and make `import finn.builder...` work here; idempotent.

    build_dir: FINN_BUILD_DIR, where FINN generates code and runs Vivado (default: $FINN_BUILD_DIR,
    else a per-user directory in the system's temporary directory). Returns it.
    """
    os.environ.setdefault("XILINX_VIVADO", PLACEHOLDER)
    build_dir = Path(build_dir or os.environ.get("FINN_BUILD_DIR") or default_build_dir()).absolute()
    build_dir.mkdir(parents=True, exist_ok=True)
    os.environ["FINN_BUILD_DIR"] = str(build_dir)
    from finn.util import settings

    if getattr(settings, "_SETTINGS", None) is None:
        settings.initialize_dummy_settings()  # reads FINN_BUILD_DIR, FINN_DEPS, ... from the environment
    s = settings._SETTINGS  # noqa: SLF001
    s.finn_build_dir = build_dir
    os.environ["FINN_CUSTOM_HLS"] = s.finn_custom_hls  # FINN's CLI: resolve_module_path("custom_hls")
    os.environ["FINN_RTLLIB"] = s.finn_rtllib
    os.environ.setdefault("XILINX_LOCAL_USER_DATA", "no")
    os.environ["LD_LIBRARY_PATH"] = ld_library_path()
    if not os.environ["LD_LIBRARY_PATH"]:
        del os.environ["LD_LIBRARY_PATH"]
    if vivado_available():
        return build_dir
    import finn.xsi as xsi

    def stub(name):
        def fail(*args, **kwargs):
            require_vivado(f"the XSI simulator ({name})")
        return fail

    for name in xsi._LAZY_NAMES:  # noqa: SLF001 - the names finn binds once XSI is built
        if name not in vars(xsi):
            setattr(xsi, name, stub(name))
    return build_dir


def fetch_deps(dest: str | os.PathLike, definitions: str | os.PathLike | None = None) -> Path:
    """finn-plus's external dependencies into `dest`, non-interactively and without Vivado."""
    from finn.interface.manage_deps import DependencyUpdater
    from finn.interface.settings import FINNSettings

    dest = Path(dest).absolute()
    s = FINNSettings.init(flow_config=Path("dummy.yaml"), auto_set_environment_vars=False)
    updater = DependencyUpdater(dependency_location=dest,
                                dependency_definition_file=Path(definitions or s.finn_deps_definitions),
                                git_timeout_s=s.deps_git_timeout, non_interactive=True)
    updater.update()  # exits 1 naming the dependency that failed
    return dest


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m export.finn_env", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch-deps", help="fetch finn-plus's external dependencies (needs GitHub, not Vivado)")
    f.add_argument("dest", help="the directory FINN_DEPS will name")
    f.add_argument("--definitions", help="dependency definition YAML (default: finn-plus's own)")
    sub.add_parser("ld-library-path", help="print LD_LIBRARY_PATH with the Xilinx library directories")
    a = p.parse_args(argv)
    if a.cmd == "fetch-deps":
        print(f"finn-plus dependencies in {fetch_deps(a.dest, a.definitions)}")
    else:
        print(ld_library_path())
    return 0


if __name__ == "__main__":
    sys.exit(main())
