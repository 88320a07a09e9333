"""One module per ``nstyle`` sub-command, each with ``add_parser(subparsers)`` and ``run(args)``."""
