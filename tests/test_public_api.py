"""Every ``nstyle.<name>`` the README and the docs show exists (issue 25: ``nstyle.reconstruct`` and
``nstyle.grid`` were shown but not importable), and the package's public names import."""
import importlib
import re

import pytest

import nstyle

from .clitools import REPO

NAME = re.compile(r"\bnstyle(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def resolve(dotted):
    """The object a dotted name names: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def shown_names():
    names = set()
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        names |= {m.group(0).rstrip(".") for m in NAME.finditer(text)
                  if not text[m.end():m.end() + 1] in "/-"}  # not a path or a file name (nstyle-video.json)
    return sorted(names)


@pytest.mark.parametrize("name", shown_names())
def test_every_name_the_docs_show_exists(name):
    try:
        resolve(name)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"{name} is shown in the docs but does not exist ({exc})")


def test_the_public_names_import():
    for name in nstyle.__all__:
        assert getattr(nstyle, name) is not None
    # the model's network, plus loading from a file (which sits above the model: app/run/network.py)
    assert issubclass(nstyle.VGG19, resolve("nstyle.model.vgg.VGG19")) and callable(nstyle.VGG19.load)
    assert {"nstyle.reconstruct", "nstyle.reconstruct_sheet", "nstyle.make_grid"} <= set(shown_names())
