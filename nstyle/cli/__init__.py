"""The ``nstyle`` command: ``main.py`` dispatches, ``args.py`` holds the argument types every command
shares, and each sub-command is one module with ``add_parser(subparsers)`` and ``run(args)``."""
