"""The stages depend in one direction: radioml <- train <- export <- build <- compress, and driver <- radioml only.

Every import in every module counts, also those inside functions (parsed with ast), and so do
`require("pkg", ...)` calls (radioml/golden_session.py's guarded import of an optional host-side
package), so a lazy import cannot hide an upward dependency. radioml/ and driver/ must import on a
PYNQ board: nothing torch-side, nothing of the later stages; the optional host-side packages only
through `require`. No module of the tree imports itself through others (no cycles).
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["radioml", "train", "export", "build", "compress"]
TORCH_SIDE = {"torch", "brevitas", "qonnx", "finn", "onnx", "onnxoptimizer", "train", "export", "build", "compress"}


OPTIONAL_HOST_SIDE = {"onnx", "onnxruntime"}  # only --emulate on a host needs them: the board wheel's [emulate] extra


def _required(node) -> str | None:
    """The package of a `require("pkg", ...)` call."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require" and node.args and \
            isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return node.args[0].value
    return None


def imports(package: str, root: Path = ROOT) -> list[tuple[str, str]]:
    """(module file, top-level package imported) for every import in a package; relative ones resolve to it;
    `require("pkg")` calls count as "required:pkg"."""
    out = []
    for path in sorted((root / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                out += [(str(path.relative_to(root)), a.name.split(".")[0]) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                out.append((str(path.relative_to(root)), package if node.level else node.module.split(".")[0]))
            elif _required(node):
                out.append((str(path.relative_to(root)), "required:" + _required(node).split(".")[0]))
    return out


def module_graph(packages, root: Path = ROOT) -> dict[str, set[str]]:
    """Project module -> the project modules it imports (at any depth in the file), relative imports resolved."""
    names = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
             for pkg in packages for p in (root / pkg).rglob("*.py")}
    graph = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            mod = ".".join(path.relative_to(root).with_suffix("").parts)
            here = mod.removesuffix(".__init__")
            base_parts = mod.split(".")[:-1]
            edges = set()
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                targets = []
                if isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    base = ".".join(base_parts[:len(base_parts) - node.level + 1]) if node.level else ""
                    stem = ".".join(x for x in (base, node.module or "") if x)
                    targets = [f"{stem}.{a.name}" for a in node.names] + [stem]
                for t in targets:
                    while t and t not in names:
                        t = t.rpartition(".")[0]
                    if t and t != here and not here.startswith(t + "."):  # a package's own __init__ is no edge
                        edges.add(t)
            graph[here] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by depth-first search, once each (as the path around it)."""
    found, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    return found


@pytest.mark.parametrize("package", STAGES)
def test_no_stage_imports_a_later_one(package):
    later = set(STAGES[STAGES.index(package) + 1:]) | {"driver"}
    bad = [(f, m) for f, m in imports(package) if m in later]
    assert not bad, f"{package} imports a later stage: {bad}"


@pytest.mark.parametrize("package", ["radioml", "driver"])
def test_board_side_packages_import_nothing_torch_side(package):
    bad = [(f, m) for f, m in imports(package) if m in TORCH_SIDE or
           (m.startswith("required:") and m[len("required:"):] not in OPTIONAL_HOST_SIDE)]
    assert not bad, f"{package} must import on a PYNQ board, but imports: {bad}"


def test_no_import_cycles_anywhere_in_the_tree():
    packages = STAGES + ["driver", "benchmarks"]
    assert cycles(module_graph(packages)) == []


def test_the_cycle_finder_sees_a_lazy_cycle(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from .b import x\n")
    (tmp_path / "pkg" / "b.py").write_text("def f():\n    from pkg import a\n")
    (tmp_path / "pkg" / "c.py").write_text("import pkg.a\n")
    assert cycles(module_graph(["pkg"], tmp_path)) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_driver_uses_only_radioml_of_the_project():
    project = {"radioml", "train", "export", "build", "compress", "benchmarks", "tests"}
    assert {m for _, m in imports("driver") if m in project} <= {"radioml"}


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text(
        "import numpy as np\nfrom . import other\n\ndef f():\n    from build.flow import build\n    import torch.nn\n")
    assert [m for _, m in imports("pkg", tmp_path)] == ["numpy", "pkg", "build", "torch"]


def test_build_is_this_projects_package_and_the_tools_see_it():
    """build/ (the layout asked for) shadows PyPA's `build` and is an output folder to common tools' defaults."""
    import build

    where = Path(build.__file__).resolve().parent
    assert where == ROOT / "build", (f"import build resolved to {where}, not this project's build/ (PyPA's build "
                                     f"installed?): run from the repository root with PYTHONPATH=. (make does)")
    cfg = (ROOT / "setup.cfg").read_text()
    assert "norecursedirs" in cfg and "build" not in cfg.split("norecursedirs =")[1].splitlines()[0]
    assert "build" not in (ROOT / "ruff.toml").read_text().split("exclude =")[1]
