"""Docs that cannot drift: every `nstyle ...` line the README and the docs pages show is parsed by the real
argument parser, and every Python block they show runs.

A renamed flag, command or module then fails here, not in a reader's terminal. Python blocks run in a
fresh folder with the default weights pointed at a random VGG-19-shaped file (no download) and, for the
names a snippet takes from its reader, the stand-ins listed in ``READER_NAMES``."""
import os
import re
import shlex
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


PYTHON_BLOCKS = [pytest.param(body, id=f"{page.name}:{line}") for page, line, body in blocks({"python"})]

# Names a snippet leaves to its reader ("your photo"), and the small stand-ins the test gives them.
READER_NAMES = {
    "content_img": lambda: gradient_image(64, 48),
    "style_img": lambda: stripes_image(64, 48),
    "img": lambda: gradient_image(64, 48),
}


@pytest.mark.parametrize("body", PYTHON_BLOCKS)
def test_every_python_block_runs(body, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NSTYLE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NSTYLE_WEIGHTS", str(random_weights_file(tmp_path)))
    monkeypatch.setenv("NSTYLE_THREADS", os.environ.get("NSTYLE_THREADS", "1"))
    namespace = {"__name__": "__main__"}
    namespace.update({name: make() for name, make in READER_NAMES.items() if re.search(rf"\b{name}\b", body)})
    exec(compile(body, "<docs block>", "exec"), namespace)  # noqa: S102 -- the docs' own examples


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
