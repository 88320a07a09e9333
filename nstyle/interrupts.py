"""Ctrl-C and SIGTERM at any instant: the command line's promise is that a run stopped by either writes the
best image it has, exits 130, and leaves no temporary file behind -- whenever the signal lands.

Python raises KeyboardInterrupt wherever the main thread happens to be, which is fine inside the
optimiser's loop (it catches it and returns its best image) but loses the result anywhere else: while
the finished image, the log or the plot are being written, between two stages, between two cells. So
the command line installs handlers (:func:`install`) that act by phase:

    before the first optimisation   nothing to keep: KeyboardInterrupt at once (exit 130, no output)
    inside an optimiser's loop      KeyboardInterrupt at once; the optimiser returns its best image
    after that                      the signal is remembered, not raised: the run goes on to the next
                                    optimiser loop (which then stops at once) or to writing its result,
                                    and the command exits 130 once everything is written

The optimisers mark their loops with :func:`interruptible`. Without :func:`install` (the library used
from Python) nothing changes: Ctrl-C raises KeyboardInterrupt as usual. SIGTERM is treated like Ctrl-C.
"""
import contextlib
import signal
import sys

_ABORT, _INTERRUPTIBLE, _DEFERRED = "abort", "interruptible", "deferred"


class _State:
    installed = False
    phase = _ABORT
    pending = None        # the last signal number received
    saved = {}
    saved_unraisable = None


_state = _State()


def _handler(signum, frame):
    # Remembered in every phase: a KeyboardInterrupt raised inside a weakref callback or a __del__ (an
    # import's lock cleanup, say) is swallowed by Python, so the optimisers also look at the flag after
    # every iteration (:func:`check`).
    _state.pending = signum
    if _state.phase != _DEFERRED:
        raise KeyboardInterrupt


def _quiet_unraisable(unraisable):
    """Python's report of an exception it had to swallow, minus the KeyboardInterrupts our handler
    raised there (the flag above keeps them)."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _state.pending is not None:
        return
    _state.saved_unraisable(unraisable)


def install():
    """Route SIGINT and SIGTERM through the phase logic above (main thread only; a no-op elsewhere)."""
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            _state.saved[sig] = signal.signal(sig, _handler)
    except (ValueError, OSError):  # not the main thread, or a platform without SIGTERM
        return
    _state.installed, _state.phase, _state.pending = True, _ABORT, None
    _state.saved_unraisable, sys.unraisablehook = sys.unraisablehook, _quiet_unraisable


def uninstall():
    for sig, previous in _state.saved.items():
        try:
            signal.signal(sig, previous)
        except (ValueError, OSError, TypeError):
            pass
    _state.saved.clear()
    if _state.installed:
        sys.unraisablehook = _state.saved_unraisable
    _state.installed, _state.phase, _state.pending = False, _ABORT, None


@contextlib.contextmanager
def interruptible():
    """The body (an optimiser's loop) may be interrupted: a signal raises KeyboardInterrupt in it, and
    one that arrived while deferred is raised on entry. Afterwards a result exists: signals defer."""
    if not _state.installed:
        yield
        return
    _state.phase = _INTERRUPTIBLE
    try:
        check()
        yield
    finally:
        _state.phase = _DEFERRED


@contextlib.contextmanager
def waiting():
    """The body waits on something outside nstyle (a scheduler's answer): a signal must end the wait at
    once in every phase, so it raises KeyboardInterrupt in the body (one that arrived while deferred is
    raised on entry). Unlike :func:`interruptible`, the phase before is restored afterwards: a wait is
    no optimiser loop, and a command that has no result yet still has none after it."""
    if not _state.installed:
        yield
        return
    before, _state.phase = _state.phase, _INTERRUPTIBLE
    try:
        check()
        yield
    finally:
        _state.phase = before


def check():
    """Raise KeyboardInterrupt when a signal is waiting (called by the optimisers between iterations)."""
    if _state.pending is not None:
        raise KeyboardInterrupt


def defer():
    """From now on, signals are remembered rather than raised (the command's work is done)."""
    _state.phase = _DEFERRED


def interrupted():
    """True when a signal arrived while deferred (the command should then exit 130 once done)."""
    return _state.pending is not None
