"""The ``nstyle`` command line: sub-commands, error reporting and exit codes.

Exit codes: 0 success; 2 bad usage or input; 1 failure while running; 130 interrupted (Ctrl-C or
SIGTERM, at any instant: see ``interrupts.py``). An error prints one line (plus an optional hint, each cut
to ``LINE_LIMIT`` characters) and no traceback unless ``--debug`` is given (before or after the
sub-command); ``--debug`` adds the traceback and keeps the exit code. Each sub-command lives in its
own module beside this one with ``add_parser`` and ``run``; ``commands.py`` lists them. This module
imports nothing heavy, so the signal handlers are in place before NumPy, SciPy and Pillow load, and it
imports a command's module only when that command runs (or its ``--help`` is asked for): ``nstyle
--help`` and ``nstyle gradcheck`` start without Pillow or SciPy's optimizer.
"""
import argparse
import importlib
import os
import signal
import sys
import traceback

from .. import interrupts
from ..errors import NStyleError
from ..version import __version__
from .commands import COMMANDS

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# An error line longer than this is cut in the middle: a 4000-character path (or a value pasted by
# mistake) would otherwise fill the terminal, while its start and its end (the reason) say what went wrong.
# A hint may be longer (what to download, its checksum and where to put it) but is cut at twice that.
LINE_LIMIT = 480


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the problem and a hint, not the whole usage text."""

    def error(self, message):
        report(f"{self.prog}: {message}", f"see `{self.prog} --help`")
        sys.exit(EXIT_USAGE)


def _command_in(argv):
    """The sub-command named on a command line: its first word that is not an option (the program's
    own options -- --help, --version, --debug -- take no value), or None."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def build_parser(command=None):
    """The parser, with the options of ``command`` (None: of every command -- what tests and docs read).
    The other commands are listed with their one-line help only, their modules not imported."""
    parser = _Parser(
        prog="nstyle", description="Neural style transfer (Gatys et al.) with handwritten backprop.",
        epilog="exit codes: 0 success, 2 bad usage or input, 1 failure while running, 130 interrupted")
    parser.add_argument("--version", action="version", version=f"nstyle {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (module, summary) in COMMANDS.items():
        if command is None or command == name:
            importlib.import_module(f"{__package__}.{module}").add_parser(sub)
        else:
            sub.add_parser(name, help=summary)
    _add_debug_flag(sub)
    return parser


def _add_debug_flag(subparsers):
    """Let `--debug` also come after a sub-command's name (`nstyle weights info FILE --debug`)."""
    for command in subparsers.choices.values():
        if not any("--debug" in action.option_strings for action in command._actions):
            command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                 help="show full tracebacks on errors")
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_debug_flag(action)


def shorten(text, limit=LINE_LIMIT):
    """``text`` on one line (newlines folded), cut in the middle to at most ``limit`` characters."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    keep = limit - 5
    head = keep * 2 // 3
    return f"{text[:head]} ... {text[len(text) - (keep - head):]}"


def report(message, hint=None):
    """Print an error as one line (newlines in the message folded, cut to LINE_LIMIT characters), plus
    the hint on a second (cut to twice that)."""
    try:
        print(f"nstyle: error: {shorten(message)}", file=sys.stderr)
        if hint:
            print(f"  hint: {shorten(hint, 2 * LINE_LIMIT)}", file=sys.stderr)
    except (OSError, ValueError):  # stderr closed: the exit code still says it
        pass


def main(argv=None, keep_handlers=False):
    """Run one command; returns its exit code. keep_handlers: leave the signal handlers in place
    afterwards (the program does, up to its exit; callers in the same process do not)."""
    interrupts.install()
    try:
        code = _main(argv)
        interrupts.defer()
        if interrupts.interrupted() and code == EXIT_OK:
            # a signal arrived while the finished result was being written: it is written; say so
            print("nstyle: interrupted after the result was written", file=sys.stderr)
            code = EXIT_INTERRUPTED
        return code
    except KeyboardInterrupt:  # in the last instants, after _main's own handler
        return EXIT_INTERRUPTED
    finally:
        if not keep_handlers:
            interrupts.uninstall()


def _main(argv):
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = build_parser(_command_in(argv) or "").parse_args(argv)
        debug = bool(getattr(args, "debug", False))
        return int(args.run(args) or EXIT_OK)
    except NStyleError as exc:
        _traceback(debug)
        report(exc.message, exc.hint)
        return exc.exit_code
    except KeyboardInterrupt:
        print("nstyle: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        _traceback(debug)
        report("out of memory", "see the estimate with --dry-run, and try a smaller --size")
        return EXIT_FAILURE
    except BrokenPipeError:
        # Output piped into something that quit early (`| head`): not an error of ours. Point stdout at
        # devnull so the interpreter's final flush does not complain a second time.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return EXIT_FAILURE
    except OSError as exc:  # the disk filled up, a file vanished mid-run...
        _traceback(debug)
        where = f" ({exc.filename})" if exc.filename else ""
        report(f"{exc.strerror or exc}{where}")
        return EXIT_FAILURE
    except Exception as exc:  # a bug: say so in one line unless asked for the traceback
        _traceback(debug)
        report(f"internal error: {type(exc).__name__}: {exc}",
               "please report it, with the traceback above" if debug else
               "run again with --debug for the traceback, and please report it")
        return EXIT_FAILURE


def _traceback(debug):
    """With --debug, the traceback of the exception being handled, above the usual error line: the
    exit code stays the one the error has without --debug, so scripts see the same status."""
    if debug:
        try:
            traceback.print_exc(file=sys.stderr)
        except (OSError, ValueError):
            pass


def entry():
    """The ``nstyle`` program (console script and ``python -m nstyle``): main(), then exit.

    An interrupted run exits through os._exit once its output is flushed: a KeyboardInterrupt that
    landed inside a C extension's import (SciPy, h5py) leaves a flag in CPython that turns a normal exit
    into death by SIGINT (status -2 instead of 130), though nstyle caught and handled it."""
    code = main(keep_handlers=True)  # a signal from here on is remembered, not raised...
    try:  # ...and once blocked, it cannot kill the interpreter while it shuts down (status -15)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    except (AttributeError, OSError, ValueError):
        pass
    if interrupts.interrupted():
        code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
