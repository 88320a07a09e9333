"""A run's record: ``--log-json`` (settings plus one record per iteration) and ``--plot`` (loss curves).

The JSON file holds ``{"nstyle": version, "status": "done" | "interrupted" | "nonfinite" | "failed",
"message", "output", "settings": {..., "engine": the engine that ran}, "records": [{"iter", "step", "stage", "loss", "content", "style",
"tv", "seconds", "style/relu1_1", ...}, ...]}``. It is written atomically when the run ends, however it
ends, so a log never disagrees with the image beside it.
"""
import json
import math

from PIL import Image

from ...atomic import atomic_write
from ...errors import InputError
from ...version import __version__


def _jsonable(value):
    if isinstance(value, Image.Image):
        return f"<image {value.width}x{value.height}>"
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or Infinity
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):  # numpy scalars
        return _jsonable(value.item())
    return str(value)


def write_log(path, settings, records, status, message="", output=None):
    """Write the run log as JSON, atomically."""
    doc = {"nstyle": __version__, "status": status, "message": message, "output": output,
           "settings": _jsonable(settings), "records": _jsonable(records)}
    text = json.dumps(doc, indent=1, allow_nan=False)
    return atomic_write(path, lambda fh: fh.write(text + "\n"), binary=False)


def require_matplotlib():
    """Import matplotlib for --plot, or raise InputError saying how to get it (checked before the run)."""
    try:
        import matplotlib  # noqa: PLC0415
    except ImportError:
        raise InputError("--plot needs matplotlib, which is not installed",
                         hint="pip install 'nstyle[plot]' (or drop --plot)") from None
    return matplotlib


def plot_losses(records, path, title=None):
    """A PNG of the loss curves per term (total, content, style and each style layer, tv), log scale.

    Coarse-to-fine stages are separated by dashed lines. Written atomically.
    """
    matplotlib = require_matplotlib()
    matplotlib.use("Agg", force=True)  # no display needed; never opens a window
    import matplotlib.pyplot as plt  # noqa: PLC0415

    steps = [r.get("step", r["iter"]) for r in records]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    try:
        def curve(key, **style):
            values = [r.get(key, 0.0) for r in records]
            if any(v > 0 for v in values):
                ax.plot(steps, [v if v > 0 else float("nan") for v in values], label=key, **style)

        curve("loss", color="black", linewidth=2)
        curve("content", color="tab:blue", linewidth=1.5)
        curve("style", color="tab:red", linewidth=1.5)
        layers = sorted({k for r in records for k in r if k.startswith("style/")})
        shades = plt.get_cmap("autumn")
        for i, key in enumerate(layers):  # one warm shade per style layer, shallow (red) to deep (yellow)
            curve(key, color=shades(0.85 * i / max(1, len(layers) - 1)), linewidth=1.0, linestyle=":")
        curve("tv", color="tab:green", linewidth=1.5)
        for prev, rec in zip(records, records[1:]):
            if rec.get("stage") != prev.get("stage"):
                ax.axvline(prev.get("step", prev["iter"]) + 0.5, color="grey", linestyle="--", linewidth=0.8)
        if records:
            ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("weighted loss")
        ax.set_title(title or "nstyle: loss per term")
        ax.grid(True, which="both", alpha=0.25)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        atomic_write(path, lambda fh: fig.savefig(fh, format="png"))
    finally:
        plt.close(fig)
    return path
