"""The ``nstyle`` command line: sub-commands, error reporting and exit codes.

Exit codes: 0 success; 2 bad usage or input; 1 failure while running; 130 interrupted (Ctrl-C).
An nstyle error prints one line (plus an optional hint) and no traceback unless ``--debug`` is given.
Each sub-command lives in its own module under ``nstyle/commands/`` with ``add_parser`` and ``run``.
"""
import argparse
import sys

from . import __version__
from .errors import NStyleError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _command_modules():
    from .commands import gradcheck, grid, reconstruct, stylize, weights  # noqa: PLC0415
    return [stylize, reconstruct, grid, gradcheck, weights]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="nstyle", description="Neural style transfer (Gatys et al.) with handwritten backprop.")
    parser.add_argument("--version", action="version", version=f"nstyle {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in _command_modules():
        module.add_parser(sub)
    return parser


def report(message, hint=None):
    print(f"nstyle: error: {message}", file=sys.stderr)
    if hint:
        print(f"  hint: {hint}", file=sys.stderr)


def main(argv=None):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or EXIT_OK)
    except NStyleError as exc:
        if args.debug:
            raise
        report(exc.message, exc.hint)
        return exc.exit_code
    except KeyboardInterrupt:
        print("nstyle: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: say so in one line unless asked for the traceback
        if args.debug:
            raise
        report(f"internal error: {type(exc).__name__}: {exc}",
               "run again with --debug for the traceback, and please report it")
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
