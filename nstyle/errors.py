"""Error types nstyle raises on purpose.

Every failure a user can cause (a missing image, a bad flag, a broken weights file, a device that is not
there) is one of these, with a one-line message and an optional hint. The command line turns them into
that line and an exit code; anything else is a bug and shows a traceback only with ``--debug``.
"""


class NStyleError(Exception):
    """Base class: ``message`` is one line, ``hint`` (optional) says what to do about it."""

    exit_code = 1

    def __init__(self, message, hint=None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self):
        return self.message


class InputError(NStyleError):
    """Bad usage or bad input (an image, a flag value, a path): exit code 2."""

    exit_code = 2


class DeviceError(InputError):
    """The requested device cannot be used (no CuPy, no GPU): exit code 2."""


class WeightsError(NStyleError):
    """A weights file is missing, corrupt, unsafe, or of the wrong shape: exit code 2."""

    exit_code = 2


class RunError(NStyleError):
    """Something failed while running (for example the loss became NaN): exit code 1."""

    exit_code = 1
