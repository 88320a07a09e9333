"""The folders are the architecture: imports point down the layers only, with no cycles (counting the
imports inside functions), and no module grows past 400 lines."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nstyle"

# Lower numbers sit lower. A module may import its own layer and the layers below it, never above.
LAYERS = {
    "nstyle.errors": 0, "nstyle.backend": 0, "nstyle.atomic": 0, "nstyle.validate": 0, "nstyle.version": 0,
    "nstyle.interrupts": 0,
    "nstyle.model.arch": 0,   # the layer table: data every layer needs, importing nothing
    "nstyle.reference": 1,
    "nstyle.cpu": 2, "nstyle.gpu": 2, "nstyle.weights": 2,
    "nstyle.model": 3, "nstyle.optim": 3,
    "nstyle.app": 4,
    "nstyle.cli": 5, "nstyle.__main__": 5, "nstyle": 6,
}


def module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules():
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(name):
    best = max((key for key in LAYERS if name == key or name.startswith(key + ".")), key=len)
    return LAYERS[best]


def imports(name, path, known):
    """Every nstyle module ``name`` imports, at module level or inside functions."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "nstyle"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "nstyle":
                target = node.module
            else:
                continue
            for alias in node.names:  # `from . import conv` imports the submodule
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return found - {name}


def graph():
    known = modules()
    return {name: {t for t in imports(name, path, known) if t in known} for name, path in known.items()}


def test_no_import_cycles():
    edges = graph()
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_imports_point_down_the_layers():
    upward = [f"{src} (layer {layer_of(src)}) imports {dst} (layer {layer_of(dst)})"
              for src, targets in graph().items() for dst in targets
              if layer_of(dst) > layer_of(src)]
    assert not upward, "\n".join(upward)


def test_the_reference_engine_imports_no_faster_path():
    for src, targets in graph().items():
        if src.startswith("nstyle.reference"):
            bad = [t for t in targets if t.startswith(("nstyle.cpu", "nstyle.gpu"))]
            assert not bad, f"{src} imports {bad}"


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_over_400_lines(name):
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= 400, f"{name}: {lines} lines"


def test_no_folder_over_12_modules():
    """A room per job: a folder that grows past a dozen modules splits into sub-packages."""
    crowded = []
    for folder in sorted({p.parent for p in PACKAGE.rglob("*.py")}):
        count = len([p for p in folder.glob("*.py") if p.name != "__init__.py"])
        if count > 12:
            crowded.append(f"{folder.relative_to(PACKAGE.parent)}: {count} modules")
    assert not crowded, "\n".join(crowded)
