"""Reading a batch manifest: CSV or JSON lines, one job per row (``jobs.job_from_row`` makes the Job).

A manifest is a regular file, or a pipe the user names (``-`` for standard input, ``/dev/stdin``,
``<(command)``); a folder, a device (``/dev/zero`` would never end) or a socket is refused before anything
is read. It is read as a stream (:func:`iter_manifest`), a row at a time, each line decoded on its own
(so an undecodable byte names its line), and no row may be longer than :data:`MAX_ROW_CHARS` -- a
multi-megabyte line is one error naming it, read no further. Relative paths in it are relative to the
manifest's folder, or to the working folder for a pipe.
"""
import csv
import itertools
import json
import os
import stat
import sys

from ...errors import InputError
from .jobs import job_from_row

# One manifest row (a CSV record may span lines inside quotes): paths and option values fit many times
# over; what is longer is not a job but a file given by mistake, and is refused before it fills memory.
# (Python's csv module refuses a cell of 128 Ki characters or more; no row reaches it.)
MAX_ROW_CHARS = 128 * 1024


def read_manifest(path):
    """The jobs of a CSV or JSON-lines manifest, as a list (:func:`iter_manifest` reads them one at a time)."""
    return list(iter_manifest(path))


def iter_manifest(path):
    """The jobs of a CSV or JSON-lines manifest (JSON lines: a .jsonl/.ndjson/.json suffix, or a first
    non-blank character ``{``), one at a time as the rows are read. ``path``: a regular file, or a pipe
    (``-``: standard input). Raises InputError naming the file and line, or the file when it is neither."""
    path = os.fspath(path)
    fh, label, base, named = _open_manifest(path)
    try:
        lines = _Lines(fh, label)
        head = []
        for line in lines:  # the first non-blank line tells a JSON-lines manifest from a CSV one
            head.append(line)
            if line.strip():
                break
        first = "".join(head).lstrip()
        json_lines = path.lower().endswith((".jsonl", ".ndjson", ".json")) or first.startswith("{")
        rows = (_json_rows if json_lines else _csv_rows)(itertools.chain(head, lines), lines, label)
        count = 0
        for line, row in rows:
            count += 1
            job = job_from_row(row, base, f"{label} line {line}")
            job.manifest = named
            yield job
        if not count:
            raise InputError(f"manifest {label}: no jobs in it")
    finally:
        if path != "-":  # standard input stays open for whoever else reads it
            fh.close()


def _open_manifest(path):
    """(text stream, label for errors, folder relative paths start from, the file's path or None for a
    pipe). Only a regular file or a pipe: a folder, a device (``/dev/zero`` would never end) or a socket
    is refused before anything is read."""
    path = os.fspath(path)
    if path == "-":
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:
            raise InputError("manifest -: standard input is closed")
        return stream, "stdin", os.getcwd(), None
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise InputError(f"manifest {path}: cannot read it ({exc.strerror or exc})") from None
    pipe = stat.S_ISFIFO(mode)
    if not (stat.S_ISREG(mode) or pipe):
        what = ("a folder" if stat.S_ISDIR(mode) else "a character device" if stat.S_ISCHR(mode) else
                "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a file")
        raise InputError(f"manifest {path}: is {what}, not a file",
                         hint="give a CSV or JSON-lines file, or - to read one from standard input")
    try:
        fh = open(path, "rb")  # noqa: SIM115 -- closed by iter_manifest; decoded a line at a time
    except OSError as exc:
        raise InputError(f"manifest {path}: cannot read it ({exc.strerror or exc})") from None
    label = os.path.basename(path) or path
    if pipe:  # /dev/stdin, <(command): paths in it are relative to where the command runs
        return fh, label, os.getcwd(), None
    return fh, label, os.path.dirname(os.path.abspath(path)), os.path.abspath(path)


class _Lines:
    """The lines of a manifest, each read with a bound (``readline(MAX_ROW_CHARS + 1)`` on the bytes) and
    decoded on its own (UTF-8, a byte-order mark allowed at the start), so undecodable bytes name their
    line; counted; a record's length (``pending``, reset by the reader after each row) is bounded too,
    so a quoted CSV cell cannot run on for ever over many short lines."""

    def __init__(self, fh, label):
        self.fh, self.label = fh, label
        self.number = 0     # lines read so far
        self.pending = 0    # characters of the record being read
        self.started = 1    # the line it began on

    def __iter__(self):
        return self

    def __next__(self):
        try:
            raw = self.fh.readline(MAX_ROW_CHARS + 1)
        except OSError as exc:
            raise InputError(f"manifest {self.label}: cannot read it ({exc.strerror or exc})") from None
        if not raw:
            raise StopIteration
        self.number += 1
        try:
            line = raw.decode("utf-8-sig" if self.number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            if len(raw) > MAX_ROW_CHARS:  # cut inside a character: the length is what is wrong
                line = "x" * len(raw)
            else:
                raise InputError(f"{self.label} line {self.number}: not UTF-8 text ({exc.reason})",
                                 hint="save the manifest as UTF-8") from None
        if not self.pending and not line.strip():  # blank lines between rows belong to no row
            self.started = self.number + 1
            return line
        self.pending += len(line)
        if len(line) > MAX_ROW_CHARS or self.pending > MAX_ROW_CHARS:
            where = self.number if len(line) > MAX_ROW_CHARS else f"{self.started}-{self.number}"
            raise InputError(f"{self.label} line {where}: a row longer than {MAX_ROW_CHARS // 1024} KiB",
                             hint="a row names files and options; is this the manifest you meant?")
        return line

    def row_done(self):
        self.pending, self.started = 0, self.number + 1


def _csv_rows(lines, counter, label):
    reader = csv.DictReader(lines, restkey="\0extra")
    try:
        if reader.fieldnames is None:
            return
        counter.row_done()
        names = [n.strip() for n in reader.fieldnames]
        if len(set(names)) != len(names):
            raise InputError(f"{label}: a column name repeats in the header")
        for row in reader:
            counter.row_done()
            if "\0extra" in row:
                raise InputError(f"{label} line {reader.line_num}: more cells than columns")
            cells = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            if any(cells.values()):
                yield reader.line_num, cells
    except csv.Error as exc:
        raise InputError(f"{label} line {counter.number}: not a CSV row ({exc})") from None


def _json_rows(lines, counter, label):
    for line in lines:
        counter.row_done()
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{label} line {counter.number}: not valid JSON ({exc})") from None
        if not isinstance(row, dict):
            raise InputError(f"{label} line {counter.number}: expected a JSON object, one job per line")
        yield counter.number, row
