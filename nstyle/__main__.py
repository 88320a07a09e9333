"""`python -m nstyle`: the same as the `nstyle` command."""
from .cli.main import entry

entry()
