"""Property-based: whatever bytes a file holds, the image loader returns an RGB image or raises InputError.

Seeds are small valid files in several formats; hypothesis flips, deletes, inserts and truncates bytes
(headers included, so declared sizes, chunk lengths and palettes go wrong), and also tries plain random
bytes. Any other exception escaping ``load_rgb`` would reach the user as a traceback.
"""
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from nstyle.app.files.imageio import load_rgb
from nstyle.errors import InputError


def _seed_files():
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), "RGB")
    out = {}
    for fmt, kwargs in (("PNG", {}), ("JPEG", {"quality": 80}), ("GIF", {}), ("BMP", {}), ("TIFF", {}),
                        ("WEBP", {"quality": 80}), ("PPM", {})):
        buf = io.BytesIO()
        try:
            rgb.save(buf, format=fmt, **kwargs)
        except (KeyError, OSError):  # a format this Pillow build cannot write
            continue
        out[fmt] = buf.getvalue()
    buf = io.BytesIO()
    Image.new("RGBA", (9, 7), (10, 20, 30, 40)).convert("P").save(buf, format="PNG", transparency=0)
    out["PNG-P"] = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(np.arange(80, dtype=np.uint16).reshape(8, 10) * 800).save(buf, format="PNG")
    out["PNG-16"] = buf.getvalue()
    return out


SEEDS = _seed_files()

mutation = st.tuples(st.sampled_from(["flip", "delete", "insert", "truncate"]),
                     st.floats(min_value=0, max_value=1, allow_nan=False),
                     st.integers(min_value=0, max_value=255))


def mutate(data, mutations):
    data = bytearray(data)
    for kind, where, value in mutations:
        if not data:
            break
        i = min(len(data) - 1, int(where * len(data)))
        if kind == "flip":
            data[i] = value
        elif kind == "delete":
            del data[i:i + 1 + value % 8]
        elif kind == "insert":
            data[i:i] = bytes([value]) * (1 + value % 5)
        else:
            del data[max(1, i):]
    return bytes(data)


def check_loader(tmp_path, data, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        img = load_rgb(path, max_pixels=4_000_000)
    except InputError as exc:
        assert str(path) in exc.message, f"the error must name the file: {exc.message}"
        assert "\n" not in exc.message
        return
    assert img.mode == "RGB" and img.width >= 1 and img.height >= 1


FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(fmt=st.sampled_from(sorted(SEEDS)), mutations=st.lists(mutation, min_size=1, max_size=6))
def test_mutated_images_load_or_raise_input_error(tmp_path, fmt, mutations):
    check_loader(tmp_path, mutate(SEEDS[fmt], mutations), ".img")


@FUZZ
@given(data=st.binary(min_size=0, max_size=600), suffix=st.sampled_from([".png", ".jpg", ".gif", ".tif", ".bin"]))
def test_random_bytes_load_or_raise_input_error(tmp_path, data, suffix):
    check_loader(tmp_path, data, suffix)


@pytest.mark.parametrize("fmt", sorted(SEEDS))
def test_every_seed_file_loads(tmp_path, fmt):
    path = tmp_path / "seed.img"
    path.write_bytes(SEEDS[fmt])
    assert load_rgb(path).mode == "RGB"
