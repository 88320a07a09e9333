"""The jobs of a batch: read from a manifest (CSV or JSON lines) or made as a cross product, and named.

A job is one stylisation: a content image, one or more style images, the ``stylize`` options it sets
itself, and (optionally) its own output name. Two ways to say the jobs:

- a manifest, one job per row: columns ``content``, ``style`` (several separated by ``;``), optional
  ``output``, and any per-job ``stylize`` option by its keyword name (``size``, ``style_weight``,
  ``style_layers``, ...). Relative input paths are relative to the manifest; a relative ``output`` is
  relative to the batch's output folder.
- a cross product (:func:`cross_product`): every content x every style x every combination of the
  swept option values.

Text values (CSV cells, command-line values) are turned into Python values by :func:`parse_value`, one
table for both. This module only reads; whether a value is acceptable is decided by ``stylize.prepare``,
which the batch calls for every job before anything is submitted.

Output names are deterministic and readable: ``<content stem>__<style stem>[+<style stem>...]`` followed
by ``__<option>=<value>`` for every option the job sets to something other than ``stylize``'s default,
then ``.png``. The name depends on the job alone, never on the other jobs, so adding values to a sweep
keeps the names (and so the finished pictures) of the jobs already there.
"""
import csv
import difflib
import glob
import hashlib
import io
import itertools
import json
import os
import re
from dataclasses import dataclass, field

from ...errors import InputError
from ..run.settings import INITS, job_option_kinds, listed_options, options_of

# How the text of each per-job option is read, in the order their values appear in output names: the
# settings' declarations (``run/settings.py``). The whole batch's options (weights, device, engine,
# max_pixels, check_memory) are one network and one device per run; a tiled run's options are not batch
# jobs' (a tiled run spreads one picture over a cluster itself).
OPTION_KINDS = job_option_kinds()
BATCH_WIDE = options_of("batch")
# Options whose one value is itself a comma list: several values of them are separated by ";".
LIST_VALUED = listed_options()
RESERVED_COLUMNS = ("content", "style", "output")
NAME_LIMIT = 180  # characters; longer names are cut and end in a hash of the full name
_UNSAFE = re.compile(r"[^A-Za-z0-9._,=+-]")


@dataclass
class Job:
    """One stylisation of a batch, as the user said it (nothing opened or checked yet)."""
    where: str                      # how errors name it: "jobs.csv line 4", "job 3"
    content: object                 # a path (or an in-memory image, from the API)
    styles: list
    options: dict = field(default_factory=dict)   # the per-job stylize keywords this job sets
    output: str = None              # its own output path, else the name from :func:`output_name`


# ---------------------------------------------------------------------------------------------------
# Values.

def _items(name, text):
    items = [t.strip() for t in str(text).split(",")]
    if not all(items):
        raise InputError(f"{name}: expected a comma-separated list with no empty items, got {text!r}")
    return items


def _int(name, text):
    try:
        return int(str(text).strip())
    except ValueError:
        raise InputError(f"{name}: expected a whole number, got {text!r}") from None


def _float(name, text):
    try:
        return float(str(text).strip())
    except ValueError:
        raise InputError(f"{name}: expected a number, got {text!r}") from None


def _bool(name, text):
    word = str(text).strip().lower()
    if word in ("true", "yes", "1", "on"):
        return True
    if word in ("false", "no", "0", "off"):
        return False
    raise InputError(f"{name}: expected true or false, got {text!r}")


def _path(text, base):
    text = os.path.expanduser(str(text).strip())
    return text if os.path.isabs(text) else os.path.normpath(os.path.join(base, text))


def parse_value(name, value, base="."):
    """The stylize value of option ``name`` from its text (or, from JSON, an already typed value).

    base: the folder relative paths start from. Raises InputError for an unknown option or text that
    is not of the option's kind; range checks are left to ``stylize.prepare``.
    """
    kind = OPTION_KINDS.get(name)
    if kind is None:
        raise _unknown_option(name)
    if not isinstance(value, str):  # JSON numbers, lists, booleans: typed already, paths still relative
        if kind == "paths" and isinstance(value, list):
            return [_path(v, base) if isinstance(v, str) else v for v in value]
        return value
    if kind == "int":
        return _int(name, value)
    if kind == "ints":
        counts = [_int(name, v) for v in _items(name, value)]
        return counts[0] if name == "iters" and len(counts) == 1 else counts
    if kind == "float":
        return _float(name, value)
    if kind == "floats":
        return [_float(name, v) for v in _items(name, value)]
    if kind == "names":
        return tuple(_items(name, value))
    if kind == "bool":
        return _bool(name, value)
    if kind == "init":
        return value.strip() if value.strip() in INITS else _path(value, base)
    if kind == "path":
        return _path(value, base)
    if kind == "paths":
        return [_path(v, base) for v in _items(name, value)]
    return value.strip()


def _unknown_option(name):
    if name in BATCH_WIDE:
        return InputError(f"{name} is set for the whole batch, not per job",
                          hint=f"give --{name.replace('_', '-')} on the command line")
    close = difflib.get_close_matches(name, list(OPTION_KINDS) + list(RESERVED_COLUMNS), n=1)
    hint = f"did you mean {close[0]}?" if close else "options: " + ", ".join(OPTION_KINDS)
    return InputError(f"unknown option {name!r}", hint=hint)


def sweep_values(name, text, base="."):
    """The values a command-line sweep gives option ``name``: a comma list for one-value options
    (``1e3,1e4``), a ``;`` list for options whose value is a list (``relu1_1;relu1_1,relu2_1``)."""
    sep = ";" if name in LIST_VALUED else ","
    parts = [p.strip() for p in str(text).split(sep)]
    if not all(parts):
        raise InputError(f"--{name.replace('_', '-')}: empty value in {text!r}")
    return [parse_value(name, p, base) for p in parts]


# ---------------------------------------------------------------------------------------------------
# Manifests.

def read_manifest(path):
    """The jobs of a CSV or JSON-lines manifest (JSON lines: a .jsonl/.ndjson/.json suffix, or a
    first non-blank character ``{``). Raises InputError naming the file and line."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8-sig") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"manifest {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    base = os.path.dirname(os.path.abspath(path))
    label = os.path.basename(path)
    json_lines = path.lower().endswith((".jsonl", ".ndjson", ".json")) or text.lstrip().startswith("{")
    rows = _json_rows(text, label) if json_lines else _csv_rows(text, label)
    jobs = [job_from_row(row, base, f"{label} line {line}") for line, row in rows]
    if not jobs:
        raise InputError(f"manifest {path}: no jobs in it")
    return jobs


def _csv_rows(text, label):
    reader = csv.DictReader(io.StringIO(text), restkey="\0extra")
    if reader.fieldnames is None:
        return []
    names = [n.strip() for n in reader.fieldnames]
    if len(set(names)) != len(names):
        raise InputError(f"{label}: a column name repeats in the header")
    rows = []
    for row in reader:
        if "\0extra" in row:
            raise InputError(f"{label} line {reader.line_num}: more cells than columns")
        cells = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if any(cells.values()):
            rows.append((reader.line_num, cells))
    return rows


def _json_rows(text, label):
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{label} line {number}: not valid JSON ({exc})") from None
        if not isinstance(row, dict):
            raise InputError(f"{label} line {number}: expected a JSON object, one job per line")
        rows.append((number, row))
    return rows


def job_from_row(row, base, where):
    """A Job from one manifest row ({column: text or JSON value}); errors start with ``where``."""
    try:
        content, style = row.get("content"), row.get("style")
        if content in (None, "") or style in (None, "", []):
            raise InputError("needs a content and a style")
        styles = style if isinstance(style, list) else [s for s in str(style).split(";")]
        if not all(str(s).strip() for s in styles):
            raise InputError(f"style: empty name in {style!r}")
        options = {name: parse_value(name, value, base) for name, value in row.items()
                   if name not in RESERVED_COLUMNS and value not in (None, "")}
    except InputError as exc:
        raise InputError(f"{where}: {exc.message}", hint=exc.hint) from None
    output = row.get("output") or None
    return Job(where, _path(content, base), [_path(s, base) for s in styles], options,
               None if output is None else str(output))


# ---------------------------------------------------------------------------------------------------
# Cross products.

def expand_paths(patterns, what):
    """Files named by ``patterns`` (paths or glob patterns), sorted within each pattern, without repeats."""
    found = []
    for pattern in patterns:
        pattern = os.path.expanduser(pattern)
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise InputError(f"{what} {pattern!r} matches no file")
        # absolute: the workers may run elsewhere (another folder, another machine sharing the files)
        found += [os.path.abspath(m) for m in matches if os.path.abspath(m) not in found]
    return found


def cross_product(contents, styles, sweeps=None):
    """Every content x every style x every combination of ``sweeps`` ({option: [values]}), in that
    order (content first). Returns Jobs named "job 1", "job 2", ..."""
    sweeps = dict(sweeps or {})
    names, value_lists = list(sweeps), [sweeps[n] for n in sweeps]
    jobs = []
    for content, style, values in itertools.product(contents, styles, itertools.product(*value_lists)):
        jobs.append(Job(f"job {len(jobs) + 1} ({_stem(content)} x {_stem(style)})", content, [style],
                        dict(zip(names, values))))
    return jobs


# ---------------------------------------------------------------------------------------------------
# Names.

def _stem(item):
    if isinstance(item, (str, bytes, os.PathLike)):
        return os.path.splitext(os.path.basename(os.fsdecode(item)))[0]
    return "image"


def _short(value):
    """A compact spelling of an option value for a file name: 1000.0 -> 1000, 1e-05 -> 1e-5."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = f"{value:g}"
        return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m.group(1) == "-" else "") + m.group(2), text)
    if isinstance(value, (list, tuple)):
        return ",".join(_short(v) for v in value)
    if isinstance(value, (str, bytes, os.PathLike)) and os.sep in os.fsdecode(value):
        return _stem(value)
    return str(value)


def _same(a, b):
    """Equal as JSON would store them (a tuple and a list, 1 and 1.0 are the same setting)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str) or a == b


def output_name(job, defaults, suffix=".png"):
    """``<content>__<style>[+<style>...][__<option>=<value>...]`` + suffix (see the module docstring)."""
    parts = [_stem(job.content), "+".join(_stem(s) for s in job.styles)]
    for name in OPTION_KINDS:  # the table's order: the same job always gets the same name
        if name in job.options and not _same(job.options[name], defaults.get(name)):
            parts.append(f"{name}={_short(job.options[name])}")
    name = _UNSAFE.sub("-", "__".join(parts))
    if len(name) > NAME_LIMIT:
        name = name[:NAME_LIMIT - 12] + "__" + hashlib.sha256(name.encode()).hexdigest()[:10]
    return name + suffix
