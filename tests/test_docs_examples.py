"""Docs that cannot drift: every `nstyle ...` line the README and the docs pages show is parsed by the real
argument parser, and every Python block they show runs.

A renamed flag, command or module then fails here, not in a reader's terminal. Python blocks run in a
fresh folder with the default weights pointed at a random VGG-19-shaped file (no download) and, for the
names a snippet takes from its reader, the stand-ins listed in ``READER_NAMES``."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from nstyle.cli.main import build_parser

from .clitools import REPO, gradient_image, random_weights_file, stripes_image

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
SHELL_LANGS = {"bash", "sh", "shell", "console", ""}


def blocks(langs):
    for page in PAGES:
        for match in FENCE.finditer(page.read_text(encoding="utf-8")):
            if match.group(1) in langs:
                line = page.read_text(encoding="utf-8")[:match.start()].count("\n") + 1
                yield page, line, match.group(2)


def command_lines():
    """Each `nstyle ...` command shown in a shell block (continuations joined, `$ ` prompts dropped)."""
    found = []
    for page, start, body in blocks(SHELL_LANGS):
        for offset, line in enumerate(body.replace("\\\n", " ").splitlines()):
            text = line.strip()
            if text.startswith("$ "):
                text = text[2:]
            for part in re.split(r"\s*(?:&&|\|\||;)\s*", text):
                if part.startswith("nstyle ") and not part.startswith("nstyle-"):
                    found.append(pytest.param(part, id=f"{page.name}:{start + 1 + offset}"))
    return found


COMMANDS = command_lines()


def test_the_docs_show_commands():
    assert len(COMMANDS) >= 30, "the pages' command examples were not found: is the fence pattern right?"


@pytest.mark.parametrize("line", COMMANDS)
def test_every_command_shown_parses(line):
    argv = shlex.split(line, comments=True)[1:]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        if exc.code == 0:  # --help, --version
            return
        pytest.fail(f"the parser refuses a command the docs show: {line}")
    assert callable(getattr(args, "run", None)), line


def python_pages():
    """Each page with Python blocks: its blocks run in order in one namespace, as a reader runs them."""
    pages = {}
    for page, line, body in blocks({"python"}):
        pages.setdefault(page, []).append((line, body))
    return [pytest.param(found, id=page.name) for page, found in pages.items()]


# Names a snippet leaves to its reader ("your photo", "a network"), and the small stand-ins the test
# gives them: (what to import, how to make it).
READER_NAMES = {
    "content_img": "gradient_image(64, 48)",
    "style_img": "stripes_image(64, 48)",
    "img": "gradient_image(64, 48)",
    "vgg": "VGG19(random_vgg_params(np.random.default_rng(0)))",
    "content": "preprocess(gradient_image(40, 32))",
    "style": "preprocess(stripes_image(40, 32))",
    "x": "preprocess(gradient_image(40, 32, seed=3))",
}
PRELUDE = """
import numpy as np
from nstyle.app.files.imageio import preprocess
from nstyle.model.gradcheck import random_vgg_params
from nstyle.model.vgg import VGG19
from tests.clitools import gradient_image, stripes_image
"""


@pytest.mark.parametrize("found", python_pages())
def test_every_python_block_runs(found, tmp_path):
    """A page's blocks run in order in one fresh interpreter (a block may register a term, say: nothing
    it does reaches the other tests)."""
    script = [PRELUDE, "namespace = {'__name__': '__main__'}"]
    for line, body in found:
        wanted = [name for name in READER_NAMES if re.search(rf"\b{name}\b", body)]
        script.append(f"for _name, _make in {[(n, READER_NAMES[n]) for n in wanted]!r}:\n"
                      "    namespace.setdefault(_name, eval(_make))")
        script.append(f"exec(compile({body!r}, '<docs block at line {line}>', 'exec'), namespace)")
    path = tmp_path / "blocks.py"
    path.write_text("\n".join(script))
    env = dict(os.environ, NSTYLE_HOME=str(tmp_path / "home"), NSTYLE_WEIGHTS=str(random_weights_file(tmp_path)),
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.setdefault("NSTYLE_THREADS", "1")
    proc = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"a Python block fails:\n{proc.stderr[-3000:]}"


def _commands():
    import argparse

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


UNDOCUMENTED_OK = {"--help", "--debug", "--output"}  # every command has them; --help says them


def test_every_flag_of_every_command_is_documented():
    """A flag added without a word in the docs fails here (the usage table once said --tile-overlap was
    "off" and left five tile flags out)."""
    pages = "".join(p.read_text(encoding="utf-8") for p in PAGES)
    usage = (REPO / "docs" / "usage.md").read_text(encoding="utf-8")
    missing = []
    for name, command in _commands().items():
        for action in command._actions:
            flags = [o for o in action.option_strings if o.startswith("--") and o not in UNDOCUMENTED_OK]
            if flags and not any(f in (usage if name == "stylize" else pages) for f in flags):
                missing.append(f"nstyle {name} {'/'.join(flags)}")
    assert not missing, "flags no docs page mentions: " + ", ".join(missing)
