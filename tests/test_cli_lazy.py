"""The command line imports a command's module only when that command runs: ``nstyle --help`` and
``nstyle gradcheck`` start without Pillow or SciPy's optimizer (issue 25), checked on the real program
(``python -m nstyle``) through the interpreter's own import log (``-X importtime``)."""
import subprocess
import sys

import pytest

from nstyle.cli import main as cli
from nstyle.cli.commands import COMMANDS

from .clitools import REPO, env_for

HEAVY = ("PIL", "scipy.optimize")


def imported(tmp_path, *args):
    """(exit code, stdout, the modules `python -m nstyle ARGS` imported)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "nstyle", *args], cwd=REPO,
                          env=env_for(tmp_path), capture_output=True, text=True, timeout=300)
    modules = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    return proc.returncode, proc.stdout, modules


def heavy(modules):
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_help_lists_every_command_and_imports_none_of_them(tmp_path):
    code, out, modules = imported(tmp_path, "--help")
    assert code == 0 and all(name in out for name in COMMANDS), out
    assert "nstyle.cli.main" in modules, "the import log was read"
    assert not heavy(modules), heavy(modules)
    assert not [m for m in modules if m.startswith("nstyle.cli.") and m.split(".")[2] in COMMANDS]


def test_gradcheck_imports_neither_pillow_nor_the_optimizer(tmp_path):
    code, out, modules = imported(tmp_path, "gradcheck")
    assert code == 0 and "checks passed" in out, out
    assert "nstyle.model.gradcheck" in modules
    assert not heavy(modules), heavy(modules)


def test_a_command_builds_its_own_options_only():
    parser = cli.build_parser("gradcheck")
    assert parser.parse_args(["gradcheck", "--op", "relu"]).op == ["relu"]
    with pytest.raises(SystemExit):  # the other commands are names and help lines only
        parser.parse_args(["stylize", "c.png", "s.png", "-o", "o.png", "--size", "64"])
    full = cli.build_parser()  # every command's options: what the tests and the docs read
    assert full.parse_args(["stylize", "c.png", "s.png", "-o", "o.png", "--size", "64"]).size == 64


def test_bad_command_is_one_line(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["paint"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'paint'" in err and len(err.strip().splitlines()) == 2, err
