"""The one place that lets finn-plus import on a machine without Xilinx tools.

finn-plus reads XILINX_VIVADO at import time and its builder imports the XSI
simulator bindings, which only exist where Vivado is installed. For the steps
that need neither (conversion to HW layers, partitioning, folding, estimates,
HLS code generation) this module sets a placeholder XILINX_VIVADO and binds the
XSI names to stubs that fail, if a step ever calls them, with a message naming
the missing tool. With real Vivado in the environment nothing is replaced.
"""
from __future__ import annotations

import os

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


def prepare() -> None:
    """Make `import finn.builder...` work here; idempotent."""
    os.environ.setdefault("XILINX_VIVADO", PLACEHOLDER)
    from finn.util import settings

    if getattr(settings, "_SETTINGS", None) is None:
        settings.initialize_dummy_settings()
    if vivado_available():
        return
    import finn.xsi as xsi

    def stub(name):
        def fail(*args, **kwargs):
            require_vivado(f"the XSI simulator ({name})")
        return fail

    for name in xsi._LAZY_NAMES:  # noqa: SLF001 - the names finn binds once XSI is built
        if name not in vars(xsi):
            setattr(xsi, name, stub(name))
