"""The temporal loss and what it needs: bilinear warping, Ruder et al.'s reliability masks and OpenCV's
flow on known translations, the loss's handwritten gradient (float64 gradient check), and the objective
that adds it to Gatys et al.'s."""
import numpy as np
import pytest

from nstyle.model.gradcheck import directional_check, numerical_gradient, random_image, random_vgg_params, rel_error
from nstyle.model.objective import StyleObjective
from nstyle.model.vgg import VGG19
from nstyle.reference.temporal import (
    box_mean,
    new_content,
    prefer_still,
    reliability,
    temporal_error,
    temporal_loss,
    warp,
)

from .test_video_clip import moving_square_clip, still_background_clip, texture

GRAD_TOL = 1e-7


def constant_flow(h, w, dx, dy):
    return np.dstack([np.full((h, w), float(dx)), np.full((h, w), float(dy))])


def shifted_pair(dx, dy, h=48, w=64, seed=3):
    """Frames a and b of one texture, b showing a moved by (dx, dy): b(p) = a(p - (dx, dy))."""
    t = np.rint(texture(h + 20, w + 20, seed)).astype(np.uint8)
    a = t[10:10 + h, 10:10 + w]
    b = t[10 - dy:10 - dy + h, 10 - dx:10 - dx + w]
    return a, b


# --- warping -----------------------------------------------------------------------------------------

def test_warp_by_whole_and_half_pixels(rng):
    img = rng.uniform(0, 255, (3, 6, 7))
    out, inside = warp(img, constant_flow(6, 7, 2, -1))   # out(x, y) = img(x + 2, y - 1)
    assert np.allclose(out[:, 1:, :5], img[:, :-1, 2:])
    assert inside[1:, :5].all() and not inside[0].any() and not inside[:, 5:].any()
    half, _ = warp(img, constant_flow(6, 7, 0.5, 0))
    assert np.allclose(half[:, :, :6], (img[:, :, :6] + img[:, :, 1:]) / 2), "bilinear: the mean of two"
    same, inside = warp(img, np.zeros((6, 7, 2)))
    assert np.array_equal(same, img) and inside.all()


def test_warp_brings_the_previous_frame_onto_the_next():
    a, b = shifted_pair(3, 2)
    backward = constant_flow(48, 64, -3, -2)  # b(p) = a(p + (-3, -2))
    warped, inside = warp(a.transpose(2, 0, 1), backward)
    assert np.array_equal(warped.transpose(1, 2, 0)[inside], b[inside].astype(float))
    assert inside.sum() == (48 - 2) * (64 - 3)


# --- reliability ---------------------------------------------------------------------------------------

def test_reliability_of_a_pure_translation():
    h, w = 40, 50
    c = reliability(constant_flow(h, w, 3, 2), constant_flow(h, w, -3, -2))
    assert c[2:, 3:].all(), "consistent flows, no boundaries: reliable wherever the source is in frame"
    assert not c[:2].any() and not c[:, :3].any(), "what came in over the border has nothing to warp"


def test_reliability_marks_disocclusions_and_motion_boundaries():
    """A square moving 4 px right over a still background: the strip it uncovers is disoccluded (the
    flows disagree there), and its edges are motion boundaries on the moving side."""
    h, w = 40, 50
    forward, backward = np.zeros((h, w, 2)), np.zeros((h, w, 2))
    forward[10:30, 10:30, 0] = 4     # frame i-1: the square at x 10..29 moves to 14..33
    backward[10:30, 14:34, 0] = -4   # frame i: the square's pixels come from 4 px to the left
    c = reliability(forward, backward)
    assert not c[15:25, 10:14].any(), "uncovered background: the backward flow says still, forward says +4"
    assert not c[15:25, 13:15].any() and not c[15:25, 33].any(), "the square's left and right edges"
    assert c[15:25, 34].all(), "beside the edge, still: its zero flow is no boundary's"
    assert c[15:25, 18:30].all() and c[:8].all() and c[:, 38:].all(), "inside the square and the still background"


def test_new_content_is_the_disocclusion_not_the_boundary():
    h, w = 40, 50
    forward, backward = np.zeros((h, w, 2)), np.zeros((h, w, 2))
    forward[10:30, 10:30, 0] = 4
    backward[10:30, 14:34, 0] = -4
    new = new_content(forward, backward)
    assert new[15:25, 10:14].all(), "the strip the square uncovers is new"
    assert not new[15:25, 14:].any() and not new[:8].any(), "its edges are in doubt, not new; the rest was there"


def test_a_sub_half_pixel_step_past_the_border_stays_inside():
    """A still border pixel with a little noise in its flow samples its own value: reliable. Past half a
    pixel the sample comes from beyond the frame: new."""
    h, w = 12, 16
    for dx, inside in ((-0.3, True), (-0.7, False)):
        flow = np.zeros((h, w, 2))
        flow[:, 0, 0] = dx   # the left column points a little out of the frame
        _, ins = warp(np.zeros((3, h, w)), flow)
        assert ins[:, 0].all() == inside and ins[:, 1:].all()
        assert new_content(np.zeros((h, w, 2)), flow)[:, 0].all() != inside


def test_box_mean_is_the_window_mean(rng):
    v = rng.uniform(0, 1, (7, 9))
    out = box_mean(v, 1)
    assert np.isclose(out[3, 4], v[2:5, 3:6].mean()) and np.isclose(out[0, 0], np.pad(v, 1, mode="edge")[:3, :3].mean())
    assert np.allclose(box_mean(v, 0), v)


def test_prefer_still_removes_the_drag_and_the_noise_keeps_the_motion(rng):
    """A flow dragged 3 px beyond a moving square and noisy everywhere else, as DIS's is: tested against
    standing still, the still background gets 0, the square keeps its motion."""
    frames, still = still_background_clip(frames=2, width=64, height=48)
    a, b = frames                                  # the square moves (2, 1) from a to b
    backward = rng.normal(0, 0.1, (48, 64, 2))     # noise on the still background
    x0, y0, side = 6 + 2, 8 + 1, 20                # the square in b
    backward[y0 - 3:y0 + side + 3, x0 - 3:x0 + side + 3] = (-2, -1)   # b's square came from (-2, -1), dragged
    out = prefer_still(backward, b, a)
    beside = _grow(x0, y0, side, 1) | _grow(x0 - 2, y0 - 1, side, 1)   # within a pixel of either square
    assert np.all(out[still[0] & ~beside] == 0), "the still background: exactly 0"
    assert np.allclose(out[y0 + 1:y0 + side - 1, x0 + 1:x0 + side - 1], (-2, -1)), "the square keeps its motion"
    assert np.array_equal(prefer_still(np.zeros((48, 64, 2)), b, a), np.zeros((48, 64, 2)))
    c = reliability(prefer_still(-backward, a, b), out)
    beside = _grow(x0, y0, side, 2) | _grow(x0 - 2, y0 - 1, side, 2)
    assert c[still[0] & ~beside].all(), "no boundary, no noise: the still background is reliable"
    assert not reliability(-backward, backward)[still[0] & ~beside].all(), "without the check it is not"


def _grow(x0, y0, side, by, h=48, w=64):
    m = np.zeros((h, w), bool)
    m[max(0, y0 - by):y0 + side + by, max(0, x0 - by):x0 + side + by] = True
    return m


@pytest.mark.parametrize("method", ["medium", "fast", "farneback"])
def test_flow_finds_a_known_translation(method):
    pytest.importorskip("cv2", reason="needs the video extra")
    from nstyle.app.video.flow import FlowEstimator, Link
    a, b = shifted_pair(3, -2)
    forward, backward = FlowEstimator(method).flows(a, b)
    assert np.allclose(np.median(forward.reshape(-1, 2), axis=0), [3, -2], atol=0.1)
    assert np.allclose(np.median(backward.reshape(-1, 2), axis=0), [-3, 2], atol=0.1)
    link = Link(forward, backward)
    assert 0.8 < link.c.mean() < 0.95, "all reliable but the strips that came in over the border"
    assert link.error(b, a) < 5.0, "a warped onto b is b, up to interpolation"


def test_reliability_on_the_test_clip():
    pytest.importorskip("cv2", reason="needs the video extra")
    from nstyle.app.video.flow import FlowEstimator, Link
    frames = moving_square_clip(frames=4)
    link = Link(*FlowEstimator("medium").flows(frames[1], frames[2]))
    assert 0.6 < link.c.mean() < 0.97, "the square's edges and trail, and the new right column"
    assert not link.c[:, -1].any(), "the background pans left: the right column is new"
    # the square (2 px right, 1 down per frame) leaves background behind its left edge: unreliable there
    x0, y0 = 6 + 2 * 2, 8 + 2 * 1
    assert link.c[y0 + 4:y0 + 16, x0 - 1:x0 + 1].mean() < 0.5
    assert link.error(frames[2], frames[1]) < 30.0


# --- the loss and its gradient -------------------------------------------------------------------------

@pytest.mark.parametrize("fractional", [False, True])
def test_temporal_loss_gradient_float64(rng, fractional):
    x = rng.uniform(-100, 100, (1, 3, 5, 6))
    omega = rng.uniform(-100, 100, (1, 3, 5, 6))
    c = rng.uniform(0, 1, (5, 6)) if fractional else (rng.uniform(0, 1, (5, 6)) > 0.3).astype(float)
    value, grad = temporal_loss(x, omega, c)
    assert grad.dtype == np.float64 and grad.shape == x.shape
    assert value == pytest.approx(float((c * (x - omega) ** 2).sum() / x.size))
    numeric = numerical_gradient(lambda z: temporal_loss(z, omega, c)[0], x)
    assert rel_error(grad, numeric) < GRAD_TOL
    assert temporal_loss(omega, omega, c)[0] == 0.0
    assert np.all(grad[..., c == 0] == 0), "unreliable pixels are free"


def test_temporal_error_is_the_reliable_mean_square():
    a, b = np.zeros((3, 2, 2)), np.zeros((3, 2, 2))
    b[:, 0, 0] = 10
    b[:, 1, 1] = 100
    c = np.array([[1.0, 1.0], [1.0, 0.0]])
    assert temporal_error(a, b, c) == pytest.approx(100 / 3)
    assert temporal_error(a, b, np.zeros((2, 2))) == 0.0


def _objective(vgg, rng, h, w):
    return StyleObjective(vgg, content=random_image(rng, h, w), styles=[random_image(rng, 16, 16)],
                          content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), tv_weight=1e-2)


def test_objective_adds_the_term_and_its_gradient(rng):
    from nstyle.app.video.objective import TemporalTerm
    vgg = VGG19(random_vgg_params(rng), dtype=np.float64, engine="reference")
    h, w = 20, 24
    term = TemporalTerm(random_image(rng, h, w), (rng.uniform(0, 1, (h, w)) > 0.2).astype(float))
    obj = _objective(vgg, np.random.default_rng(5), h, w).add_term(term.at((w, h)), 50.0)
    x = random_image(rng, h, w)
    total, grad = obj.value_and_grad(x)
    b = obj.last_breakdown
    assert b["temporal"] == pytest.approx(50.0 * b["paper/temporal"])
    assert b["total"] == pytest.approx(b["content"] + b["style"] + b["tv"] + b["temporal"]) and total == b["total"]
    assert directional_check(obj.value, grad, x, rng, eps=1e-3, directions=3) < 1e-5
    plain = _objective(vgg, np.random.default_rng(5), h, w)  # the same images, without the term
    silent = _objective(vgg, np.random.default_rng(5), h, w).add_term(term.at((w, h)), 0.0)
    assert silent.value(x) == plain.value(x) and total != plain.value(x)


def test_term_resized_for_a_coarse_stage(rng):
    from nstyle.app.video.objective import TemporalTerm
    term = TemporalTerm(rng.uniform(-50, 50, (1, 3, 24, 32)), np.ones((24, 32)))
    small = term.at((16, 12))
    assert small.omega.shape == (1, 3, 12, 16) and small.c.shape == (12, 16)
    assert np.allclose(small.c, 1.0)
    same = term.at((32, 24))  # a term of its own for each stage's objective, the same arrays
    assert same is not term and same.omega is term.omega and same.c is term.c
