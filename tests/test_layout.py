"""The folders are the architecture: imports point down the layers only, with no cycles (counting the
imports inside functions), and no module grows past 400 lines."""
import ast
import re
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


def test_the_model_loads_no_files():
    """Issue 25: the model is built from arrays; reading a weights file sits above it (app/run/network.py)."""
    bad = [f"{src} imports {dst}" for src, targets in graph().items() if src.startswith("nstyle.model")
           for dst in targets if dst.startswith("nstyle.weights")]
    assert not bad, "\n".join(bad)


def test_the_optimizers_know_nothing_of_images_or_networks():
    """optim/ takes an objective with value_and_grad and a box from its caller: it imports no model, no
    weights, no application module (the device helpers come from backend.py)."""
    bad = [f"{src} imports {dst}" for src, targets in graph().items() if src.startswith("nstyle.optim")
           for dst in targets if dst.startswith(("nstyle.model", "nstyle.weights", "nstyle.app", "nstyle.reference"))]
    assert not bad, "\n".join(bad)


def test_only_the_backend_imports_cupy():
    found = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = ([a.name for a in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            if any(t == "cupy" or t.startswith("cupy.") for t in targets):
                found.append(name)
    assert found and set(found) == {"nstyle.backend"}, found


# --- docs/layout.md names every module under its folder, and only modules that exist ----------------

LAYOUT_DOC = PACKAGE.parent / "docs" / "layout.md"


def layout_sections():
    """{folder relative to the repository: the text the page's tree gives it}. A folder line starts
    with its name and a slash: ``nstyle/app/`` at the margin, ``  run/`` two spaces in for a sub-folder
    of the last folder above it; the lines below it, up to the next folder line, are its text."""
    text = LAYOUT_DOC.read_text(encoding="utf-8")
    tree = text.split("```")[1]
    sections, stack, current = {}, [], None
    for line in tree.splitlines()[1:]:
        m = re.match(r"^( *)([\w/]+/)(?:\s|$)", line)
        if m:
            depth = len(m.group(1)) // 2
            stack = stack[:depth] + [m.group(2).rstrip("/")]
            current = "/".join(stack)
            sections[current] = line[m.end(2):]
        elif current is not None:
            sections[current] += " " + line
    return sections


def test_layout_page_names_every_module_under_its_folder():
    sections = layout_sections()
    folders = {p.parent for p in PACKAGE.rglob("*.py")}
    missing, unknown = [], []
    for folder in sorted(folders):
        key = str(folder.relative_to(PACKAGE.parent))
        text = sections.get(key)
        if text is None:
            missing.append(f"{key}/ (the folder itself)")
            continue
        named = set(re.findall(r"\b(\w+)\.py\b", text))
        present = {p.stem for p in folder.glob("*.py")} - {"__init__"}
        missing += [f"{key}/{stem}.py" for stem in sorted(present - named)]
        unknown += [f"{key}/{stem}.py" for stem in sorted(named - present)]
    stale = sorted(k for k in sections if not (PACKAGE.parent / k).is_dir())
    assert not missing, "docs/layout.md does not name: " + ", ".join(missing)
    assert not unknown, "docs/layout.md names modules that do not exist: " + ", ".join(unknown)
    assert not stale, "docs/layout.md shows folders that do not exist: " + ", ".join(stale)
