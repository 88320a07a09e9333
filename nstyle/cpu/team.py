"""The worker threads behind ``threads.py``: a few persistent threads, each asleep on a lock of its own
until the caller hands it a job.

A region of the CPU engine (one layer's bands, one element-wise step) is a job that every thread of the
team drains together with the caller. ``concurrent.futures.ThreadPoolExecutor`` did this before: a
Future, a work item and a queue per task, a condition to wait on each; a region of two tiny tasks took
about 85 us there against 50 us here (2 cores, a KVM guest, one pool thread; most of what is left is
waking a sleeping thread on the other core). At 128 px an evaluation has some 60 regions.

Not for general use: :func:`Team.run` is called by one caller at a time (``threads.py`` holds its BLAS
lock around every region), and a job must not raise through the worker (``threads.py`` wraps it).
"""
import os
import threading


class _Worker:
    """One thread: waits on ``go``, runs ``job``, records its error, releases ``done``."""

    def __init__(self, name, initializer):
        self.go, self.done = threading.Lock(), threading.Lock()
        self.go.acquire()
        self.done.acquire()
        self.job, self.error = None, None
        self.thread = threading.Thread(target=self._loop, args=(initializer,), name=name, daemon=True)
        self.thread.start()

    def _loop(self, initializer):
        if initializer is not None:
            initializer()
        while True:
            self.go.acquire()
            job, self.job = self.job, None
            if job is None:  # the team is being retired
                self.done.release()
                return
            try:
                job()
            except BaseException as exc:  # handed to the caller, which re-raises it
                self.error = exc
            self.done.release()


class Team:
    """``size`` worker threads, started at once and kept until :meth:`retire`."""

    def __init__(self, size, name="nstyle", initializer=None):
        self.size, self.pid = size, os.getpid()
        self.workers = [_Worker(f"{name}_{i}", initializer) for i in range(size)]

    def usable(self, size):
        """Whether this team has ``size`` workers alive in this process (a forked child has none)."""
        return self.pid == os.getpid() and self.size >= size

    def run(self, jobs, own):
        """Hand ``jobs[i]`` to worker i, run ``own()`` here, wait for all of them; re-raise the first
        error (the caller's own first), after every worker has finished."""
        started = []
        error = None
        try:
            for worker, job in zip(self.workers, jobs):
                worker.job, worker.error = job, None
                worker.go.release()
                started.append(worker)
            own()
        except BaseException as exc:
            error = exc
        for worker in started:
            while True:  # a signal (Ctrl-C) while waiting: keep waiting, the worker uses our arrays
                try:
                    worker.done.acquire()
                    break
                except BaseException as exc:
                    error = error or exc
            error = error or worker.error
            worker.error = None
        if error is not None:
            raise error

    def retire(self):
        """Let the workers' threads end (after any job they are running)."""
        for worker in self.workers:
            worker.job = None
            worker.go.release()
