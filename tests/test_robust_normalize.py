"""`nstyle weights normalize` (issue 26, items 2, 3, 8): its source comes from where every command's does
and it says which; no output may replace an image it reads or its source weights (by symlink or hard
link either); the images are measured one at a time; the memory is checked before any image is read,
and --dry-run creates nothing."""
import os
import shutil
import weakref

import numpy as np
import pytest

from nstyle.cli import main as cli
from nstyle.model.gradcheck import random_image, random_vgg_params
from nstyle.weights import normalize
from nstyle.weights.paths import WEIGHTS_FILENAME

from .clitools import assert_one_line_error, gradient_image, nstyle, random_weights_file
from .test_robust import png_bytes


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return random_weights_file(tmp_path_factory.getbasetemp())


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        gradient_image(40 + 8 * i, 32, seed=i).save(folder / f"im{i}.png")
    return folder


def _files(folder):
    return {p: p.read_bytes() for p in sorted(folder.iterdir())}


# --- where the source weights come from ------------------------------------------------------------

def test_the_source_is_nstyle_weights_when_set_and_the_run_says_so(tmp_path, images, weights):
    result = nstyle(tmp_path, "weights", "normalize", "--images", images, "-o", "norm.h5", "--size", 32,
                    NSTYLE_WEIGHTS=weights)
    assert result.code == 0, result
    assert f"normalising {weights} (from $NSTYLE_WEIGHTS)" in result.err, result
    assert (tmp_path / "norm.h5").is_file()
    assert not (tmp_path / "nstyle-home").exists(), "nothing fetched into the cache"


def test_without_weights_or_the_variable_the_cached_file_is_the_source(tmp_path, images, weights):
    home = tmp_path / "nstyle-home"
    home.mkdir()
    shutil.copy(weights, home / WEIGHTS_FILENAME)
    result = nstyle(tmp_path, "weights", "normalize", "--images", images, "-o", "norm.h5", "--size", 32)
    assert result.code == 0, result
    assert f"normalising {home / WEIGHTS_FILENAME} (from the cache)" in result.err, result
    named = nstyle(tmp_path, "weights", "normalize", "--images", images, "-o", "norm2.h5", "--size", 32,
                   "--weights", weights, NSTYLE_WEIGHTS=home / "elsewhere.h5")
    assert named.code == 0 and "(from --weights)" in named.err, named  # the flag wins over the variable


def test_a_missing_nstyle_weights_file_is_one_line_naming_the_variable(tmp_path, images):
    result = nstyle(tmp_path, "weights", "normalize", "--images", images, "-o", "norm.h5",
                    NSTYLE_WEIGHTS=tmp_path / "gone.h5")
    assert_one_line_error(result, 2, "NSTYLE_WEIGHTS", "gone.h5")


# --- no output over an input ------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["same name", "symlink", "hard link"])
@pytest.mark.parametrize("target", ["image", "source"])
def test_the_output_may_not_replace_an_image_or_the_source(tmp_path, images, weights, how, target):
    source = tmp_path / "vgg.h5"
    shutil.copy(weights, source)
    victim = images / "im1.png" if target == "image" else source
    out = tmp_path / "out.h5"
    if how == "same name":
        out = victim
    elif how == "symlink":
        out.symlink_to(victim)
    else:
        os.link(victim, out)
    before = victim.read_bytes()
    result = nstyle(tmp_path, "weights", "normalize", "--images", images, "-o", out, "--weights", source,
                    "--size", 32)
    assert_one_line_error(result, 2, "source file" if target == "source" else "reads")
    assert victim.read_bytes() == before


def test_convert_refuses_a_hard_link_of_its_source(tmp_path, weights):
    source = tmp_path / "vgg.h5"
    shutil.copy(weights, source)
    os.link(source, tmp_path / "copy.h5")
    before = source.stat().st_mtime_ns
    result = nstyle(tmp_path, "weights", "convert", source, "-o", tmp_path / "copy.h5")
    assert_one_line_error(result, 2, "source file")
    assert source.stat().st_mtime_ns == before


# --- one image at a time --------------------------------------------------------------------------

def test_the_images_are_measured_one_at_a_time(rng):
    params = random_vgg_params(rng)
    refs, most = [], [0]

    def stream():
        for i in range(6):
            x = random_image(rng, 24 + 4 * i, 28).astype(np.float32)
            refs.append(weakref.ref(x))
            most[0] = max(most[0], sum(r() is not None for r in refs))
            yield x
            del x

    new, scales, dead = normalize.normalize_params(params, stream())
    assert most[0] <= 2, f"{most[0]} images held at once"
    # the streamed result is the one a list gives
    rng2 = np.random.default_rng(0)
    listed = [random_image(rng2, 24 + 4 * i, 28).astype(np.float32) for i in range(3)]
    a = normalize.normalize_params(params, listed)[1]
    b = normalize.normalize_params(params, iter(listed))[1]
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# --- the memory check and --dry-run ---------------------------------------------------------------

def test_the_memory_is_checked_before_any_image_is_read(tmp_path, images, weights, monkeypatch, capsys):
    from nstyle.app.files import imageio
    from nstyle.app.run import memory
    monkeypatch.setattr(memory, "available_bytes", lambda *a, **k: (64 * 2**20, "test"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was decoded before the memory check")

    monkeypatch.setattr(imageio, "load_rgb", no_decoding)
    code = cli.main(["weights", "normalize", "--images", str(images), "-o", str(tmp_path / "o.h5"),
                     "--weights", str(weights), "--size", "32"])
    err = capsys.readouterr().err
    assert code == 2 and "needs about" in err and "only 64.0 MiB is free" in err, err
    assert not (tmp_path / "o.h5").exists()


def test_dry_run_creates_nothing_and_says_what_would_run(tmp_path, images, weights):
    before = sorted(p.name for p in tmp_path.rglob("*"))
    out = tmp_path / "new" / "deeper" / "norm.h5"
    result = nstyle(tmp_path, "weights", "normalize", "--images", images, "-o", out, "--size", 32, "--dry-run")
    assert result.code == 0, result
    assert "from the cache; not fetched yet" in result.out and "3 in" in result.out and "memory needed" in result.out
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, "a dry run created something"
    result = nstyle(tmp_path, "weights", "normalize", "--images", images, "-o", out, "--size", 32, "--dry-run",
                    "--weights", weights)
    assert result.code == 0 and f"{weights} (from --weights)" in result.out, result
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_bad_image_is_found_before_any_is_decoded(tmp_path, images, weights):
    (images / "zz-bomb.png").write_bytes(png_bytes(60000, 60000))
    result = nstyle(tmp_path, "weights", "normalize", "--images", images, "-o", "o.h5", "--weights", weights)
    assert_one_line_error(result, 2, "zz-bomb.png", "megapixels")
    assert result.cpu_seconds < 30 and not (tmp_path / "o.h5").exists()
