"""docs/backprop.md names real code: every file it points to exists, every function, class or method it
names is defined there, every test it cites exists, and every `nstyle gradcheck` command it gives is a
valid one that runs and passes."""
import ast
import keyword
import re
import shlex
from functools import lru_cache
from pathlib import Path

import pytest

from nstyle.cli import main as cli
from nstyle.model.gradcheck import OP_NAMES
from nstyle.model.vgg import ENGINES

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "backprop.md"
TEXT = DOC.read_text(encoding="utf-8")
# Inline code spans (single backticks; the ``` fences are not spans).
SPANS = re.findall(r"(?<!`)`([^`\n]+)`(?!`)", TEXT)
# `nstyle/reference/pool.py: avg_pool2d_backward, max_pool2d_backward`, or a path alone.
CODE_REF = re.compile(r"^((?:nstyle|tests|docs)/[\w/.]*?)(?:(?:::|:\s*)(.+))?$")
IDENTIFIER = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
# Words the doc shows in code type that are program output, not names in the code.
OUTPUT_WORDS = {"FAIL"}
COMMAND = re.compile(r"nstyle gradcheck(?:[ \t]+--[a-z-]+(?:[ \t]+[a-z_]+)?)*")


@lru_cache(maxsize=None)
def parse(path):
    return ast.parse((REPO / path).read_text(encoding="utf-8"))


def _targets(node):
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    for target in targets:
        for name in ast.walk(target):
            if isinstance(name, ast.Name):
                yield name.id


def top_level_names(path):
    """Module-level functions, classes and assignments, and Class.member for what classes define."""
    names = set()
    for node in parse(path).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            names.update(_targets(node))
        if isinstance(node, ast.ClassDef):
            for member in node.body:
                if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.add(f"{node.name}.{member.name}")
                elif isinstance(member, (ast.Assign, ast.AnnAssign)):
                    names.update(f"{node.name}.{t}" for t in _targets(member))
    return names


def any_names(path):
    """Everything a file defines anywhere: top-level names, nested functions, parameters, attributes."""
    names = set(top_level_names(path))
    for node in ast.walk(parse(path)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            names.update(arg.arg for arg in a.posonlyargs + a.args + a.kwonlyargs)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return names


def code_refs():
    """(path, [names]) for every span that points into the repository."""
    refs = []
    for span in SPANS:
        m = CODE_REF.match(span.strip())
        if m:
            names = [n.strip() for n in (m.group(2) or "").split(",") if n.strip()]
            refs.append((m.group(1), tuple(names)))
    return list(dict.fromkeys(refs))


def python_files_named():
    return sorted({path for path, _ in code_refs() if path.endswith(".py") and path.startswith("nstyle/")})


def test_the_doc_names_code_at_all():
    refs = code_refs()
    assert len(python_files_named()) >= 15 and sum(len(names) for _, names in refs) >= 40, refs


@pytest.mark.parametrize("path,names", code_refs(), ids=lambda v: v if isinstance(v, str) else ",".join(v))
def test_every_path_exists_and_defines_what_the_doc_says(path, names):
    assert (REPO / path).exists(), f"docs/backprop.md names {path}, which does not exist"
    if not names:
        return
    assert path.endswith(".py"), (path, names)
    defined = top_level_names(path)
    missing = [n for n in names if n not in defined]
    assert not missing, f"{path} does not define {missing}"


def test_every_bare_name_is_defined_in_a_file_the_doc_names():
    """Names written without a path (`tv_loss`, `GramGradient.add_rows`, `dout`) must still be code."""
    known = set()
    for path in python_files_named():
        known |= any_names(path)
    bare = {s for s in SPANS if IDENTIFIER.match(s) and not keyword.iskeyword(s) and s not in OUTPUT_WORDS}
    unknown = sorted(n for n in bare if n not in known and n.split(".")[-1] not in known)
    assert not unknown, f"docs/backprop.md names {unknown}, defined in none of its files"


def test_the_gpu_section_names_only_the_stable_gpu_files():
    gpu_files = {path for path, _ in code_refs() if path.startswith("nstyle/gpu/")}
    assert gpu_files <= {"nstyle/gpu/conv.py", "nstyle/gpu/engine.py"}, gpu_files


def commands():
    return sorted(set(COMMAND.findall(TEXT)), key=lambda c: (len(c), c))


def test_every_op_has_its_command_in_the_doc():
    named = {a for c in commands() for a in _option_values(shlex.split(c), "--op")}
    assert named == set(OP_NAMES), f"ops without a command in the doc: {set(OP_NAMES) - named}"


def _option_values(argv, option):
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == option]


@pytest.mark.parametrize("command", commands())
def test_every_gradcheck_command_is_valid_and_passes(capsys, command):
    argv = shlex.split(command)
    assert argv[:2] == ["nstyle", "gradcheck"]
    assert all(op in OP_NAMES for op in _option_values(argv, "--op")), command
    assert all(e in ENGINES for e in _option_values(argv, "--engine")), command
    code = cli.main(argv[1:])
    out = capsys.readouterr().out
    assert code == 0 and "FAIL" not in out, f"{command}:\n{out}"


def prose():
    """The text outside code fences and code spans: where Markdown and math are parsed."""
    text = re.sub(r"```.*?```", "", TEXT, flags=re.S)
    return re.sub(r"(?<!`)`[^`\n]+`(?!`)", "", text)


def math_spans():
    text = prose()
    display = re.findall(r"\$\$(.+?)\$\$", text, flags=re.S)
    inline = re.findall(r"\$([^$\n]+)\$", re.sub(r"\$\$(.+?)\$\$", "", text, flags=re.S))
    return display + inline


def test_math_is_balanced_and_display_math_stands_alone():
    """GitHub renders $$...$$ only when it opens and closes; an odd count swallows the rest of the page."""
    text = prose()
    assert text.count("$$") % 2 == 0
    lines = text.splitlines()
    for i, line in enumerate(lines):
        assert line.replace("$$", "").count("$") % 2 == 0, f"unbalanced inline math: {line}"
        if "$$" in line:
            assert line.startswith("$$") and line.rstrip().endswith("$$"), f"display math inside a line: {line}"
            assert not lines[i - 1].strip() and not lines[i + 1].strip(), f"no blank line around: {line}"
    assert len(math_spans()) > 100


def test_math_survives_githubs_markdown_pass():
    """GitHub reads Markdown before MathJax sees the math: a backslash before punctuation (\\, \\{ \\;) is
    eaten as an escape, and an underscore after punctuation (}_{ or )_{) can open emphasis that runs into
    the next formula. Write \\lbrace, and put a space after such an underscore (}_ {)."""
    for span in math_spans():
        assert not re.search(r"\\[!-/:-@\[-`{-~]", span), f"backslash before punctuation in: {span}"
        assert not re.search(r"[!-/:-@\[-`{-~]_[^ ]", span), f"underscore after punctuation in: {span}"
        assert "*" not in span, f"an asterisk reads as emphasis: {span}"


def github_anchor(heading):
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def test_links_inside_the_page_resolve():
    anchors = {github_anchor(h) for h in re.findall(r"^#+ (.+)$", TEXT, flags=re.M)}
    links = re.findall(r"\]\(#([^)]+)\)", TEXT)
    assert links and all(link in anchors for link in links), sorted(set(links) - anchors)
