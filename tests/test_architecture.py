"""The stages depend in one direction: radioml <- train <- export <- build <- compress, and driver <- radioml only.

Every import in every module counts, also those inside functions (parsed with ast), so a
lazy import cannot hide an upward dependency. radioml/ and driver/ must import on a PYNQ
board: nothing torch-side, nothing of the later stages.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["radioml", "train", "export", "build", "compress"]
TORCH_SIDE = {"torch", "brevitas", "qonnx", "finn", "onnx", "onnxoptimizer", "train", "export", "build", "compress"}


def imports(package: str, root: Path = ROOT) -> list[tuple[str, str]]:
    """(module file, top-level package imported) for every import in a package; relative ones resolve to it."""
    out = []
    for path in sorted((root / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                out += [(str(path.relative_to(root)), a.name.split(".")[0]) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                out.append((str(path.relative_to(root)), package if node.level else node.module.split(".")[0]))
    return out


@pytest.mark.parametrize("package", STAGES)
def test_no_stage_imports_a_later_one(package):
    later = set(STAGES[STAGES.index(package) + 1:]) | {"driver"}
    bad = [(f, m) for f, m in imports(package) if m in later]
    assert not bad, f"{package} imports a later stage: {bad}"


@pytest.mark.parametrize("package", ["radioml", "driver"])
def test_board_side_packages_import_nothing_torch_side(package):
    bad = [(f, m) for f, m in imports(package) if m in TORCH_SIDE]
    assert not bad, f"{package} must import on a PYNQ board, but imports: {bad}"


def test_driver_uses_only_radioml_of_the_project():
    project = {"radioml", "train", "export", "build", "compress", "benchmarks", "tests"}
    assert {m for _, m in imports("driver") if m in project} <= {"radioml"}


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text(
        "import numpy as np\nfrom . import other\n\ndef f():\n    from build.flow import build\n    import torch.nn\n")
    assert [m for _, m in imports("pkg", tmp_path)] == ["numpy", "pkg", "build", "torch"]
