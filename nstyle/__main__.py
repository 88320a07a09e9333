"""`python -m nstyle`: the same as the `nstyle` command."""
import sys

from .cli import main

sys.exit(main())
