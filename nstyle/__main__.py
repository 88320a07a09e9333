"""`python -m nstyle`: the same as the `nstyle` command."""
import sys

from .cli.main import main

sys.exit(main())
