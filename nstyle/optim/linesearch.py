"""The Moré-Thuente line search (MINPACK-2's dcsrch/dcstep), as L-BFGS-B uses it.

The search itself (``MoreThuente``) is scalar work on the host: the caller evaluates f and its slope
along the search direction at the step it proposes, and feeds them back until the search is done.

Notation: phi(a) = f(x + a d), phi'(a) = g(x + a d)'d. A step a is accepted when it satisfies both

    sufficient decrease   phi(a) <= phi(0) + ftol * a * phi'(0)
    curvature             |phi'(a)| <= gtol * |phi'(0)|

(the strong Wolfe conditions). The search keeps an interval [stx, sty] (not ordered) known to hold
an acceptable step: stx is the best step so far (lowest value), sty the other end. Each trial picks
a new step from cubic and quadratic interpolants of phi at the interval ends (``_interpolated_step``)
and shrinks the interval. While no step has met sufficient decrease with a non-negative slope
("stage 1"), the search works on psi(a) = phi(a) - phi(0) - ftol * a * phi'(0) instead, whose minimiser
is easier to bracket.

Reference: J. J. Moré and D. J. Thuente, "Line search algorithms with guaranteed sufficient decrease",
ACM TOMS 20 (1994) 286-307. The constants and the order of the tests follow MINPACK-2 (and therefore
L-BFGS-B 3.0 as SciPy ships it), so that the same inputs give the same steps.

The last section, ``search_along``, is L-BFGS-B's use of it: the step limit the box imposes, the first
trial step, and the trial points (NumPy or CuPy arrays, kept inside the box).
"""
from typing import NamedTuple

import numpy as np

from ..backend import get_xp
from .cauchy import quiet

FG = "fg"                  # evaluate phi and phi' at ``search.step`` and call ``update`` again
CONVERGED = "converged"    # both conditions hold at ``search.step``
WARNING = "warning"        # no acceptable step can be found; ``search.step`` is the best one seen
ERROR = "error"            # invalid arguments (see ``search.message``)

XTRAPL, XTRAPU = 1.1, 4.0  # an unbracketed search extrapolates to [stp + 1.1 (stp - stx), stp + 4 (stp - stx)]


class MoreThuente:
    """One line search. Create it with phi(0), phi'(0) and a first trial step, then loop::

        search = MoreThuente(f0, slope0, step, step_max)
        while search.status == FG:
            f, slope = ...evaluate at search.step...
            search.update(f, slope)
    """

    def __init__(self, f0, slope0, step, step_max, step_min=0.0, ftol=1e-3, gtol=0.9, xtol=0.1):
        self.status, self.message = FG, ""
        for bad, why in ((step < step_min, "step < step_min"), (step > step_max, "step > step_max"),
                         (slope0 >= 0.0, "initial slope >= 0"), (ftol < 0.0, "ftol < 0"),
                         (gtol < 0.0, "gtol < 0"), (xtol < 0.0, "xtol < 0"),
                         (step_min < 0.0, "step_min < 0"), (step_max < step_min, "step_max < step_min")):
            if bad:
                self.status, self.message = ERROR, why
        self.step = step
        self.step_min, self.step_max = step_min, step_max
        self.ftol, self.gtol, self.xtol = ftol, gtol, xtol
        self.f0, self.slope0 = f0, slope0
        self.slope_test = ftol * slope0          # the slope of the sufficient-decrease line
        self.bracketed = False
        self.stage = 1
        self.width = step_max - step_min         # interval widths of the last two trials: if the
        self.width1 = self.width / 0.5           # interval does not shrink enough, bisect instead
        self.stx, self.fx, self.gx = 0.0, f0, slope0   # best step so far
        self.sty, self.fy, self.gy = 0.0, f0, slope0   # other end of the interval
        self.lo, self.hi = 0.0, step + XTRAPU * step   # where the next trial may fall

    def update(self, f, slope):
        """Take phi and phi' at ``self.step``; set ``self.status`` (and ``self.step`` when it is FG)."""
        step = self.step
        f_test = self.f0 + step * self.slope_test
        if self.stage == 1 and f <= f_test and slope >= 0.0:
            self.stage = 2
        # Warnings first, then convergence, in MINPACK-2's order (a later test overrides an earlier one).
        if self.bracketed and (step <= self.lo or step >= self.hi):
            self.status, self.message = WARNING, "rounding errors prevent progress"
        if self.bracketed and self.hi - self.lo <= self.xtol * self.hi:
            self.status, self.message = WARNING, "xtol test satisfied"
        if step == self.step_max and f <= f_test and slope <= self.slope_test:
            self.status, self.message = WARNING, "step = step_max"
        if step == self.step_min and (f > f_test or slope >= self.slope_test):
            self.status, self.message = WARNING, "step = step_min"
        if f <= f_test and abs(slope) <= self.gtol * (-self.slope0):
            self.status, self.message = CONVERGED, ""
        if self.status in (WARNING, CONVERGED):
            return self.status

        if self.stage == 1 and f <= self.fx and f > f_test:
            # Lower value but not yet sufficient decrease: interpolate psi, not phi (shift by the line).
            shift = self.slope_test
            ends = (self.stx, self.fx - self.stx * shift, self.gx - shift,
                    self.sty, self.fy - self.sty * shift, self.gy - shift)
            ends, new_step, self.bracketed = _interpolated_step(
                *ends, step, f - step * shift, slope - shift, self.bracketed, self.lo, self.hi)
            stx, fxm, gxm, sty, fym, gym = ends
            self.stx, self.fx, self.gx = stx, fxm + stx * shift, gxm + shift
            self.sty, self.fy, self.gy = sty, fym + sty * shift, gym + shift
        else:
            ends = (self.stx, self.fx, self.gx, self.sty, self.fy, self.gy)
            ends, new_step, self.bracketed = _interpolated_step(
                *ends, step, f, slope, self.bracketed, self.lo, self.hi)
            self.stx, self.fx, self.gx, self.sty, self.fy, self.gy = ends

        if self.bracketed:
            # Bisect when the last two trials did not shrink the interval by a third.
            if abs(self.sty - self.stx) >= 0.66 * self.width1:
                new_step = self.stx + 0.5 * (self.sty - self.stx)
            self.width1 = self.width
            self.width = abs(self.sty - self.stx)
            self.lo, self.hi = min(self.stx, self.sty), max(self.stx, self.sty)
        else:
            self.lo = new_step + XTRAPL * (new_step - self.stx)
            self.hi = new_step + XTRAPU * (new_step - self.stx)
        new_step = min(max(new_step, self.step_min), self.step_max)
        # No further progress possible: go back to the best step seen.
        if self.bracketed and (new_step <= self.lo or new_step >= self.hi
                               or self.hi - self.lo <= self.xtol * self.hi):
            new_step = self.stx
        self.step = new_step
        self.status = FG
        return self.status


def _cubic(f_a, f_b, a, b, g1, g2):
    """The cubic through (a, f_a) and (b, f_b) with slopes g1 and g2 at its ends: returns (theta, gamma),

        theta = 3 (f_a - f_b)/(b - a) + g1 + g2,    gamma = sqrt(theta^2 - g1 g2)  (>= 0),

    from which its minimiser follows; scaled by s = max|.| so that squaring cannot overflow. (Which
    end's slope is g1 only changes the rounding; the callers keep MINPACK-2's order.) The square
    root's argument is clamped at 0: it is negative only through rounding (MINPACK-2 clamps in case 3
    only; elsewhere a negative argument would give NaN).
    """
    theta = 3.0 * (f_a - f_b) / (b - a) + g1 + g2
    s = max(abs(theta), abs(g1), abs(g2))
    return theta, s * np.sqrt(max(0.0, (theta / s) ** 2 - (g1 / s) * (g2 / s)))


def _interpolated_step(stx, fx, dx, sty, fy, dy, stp, fp, dp, bracketed, stpmin, stpmax):
    """MINPACK-2's dcstep: the next trial step, and the updated interval.

    (stx, fx, dx) is the best point, (sty, fy, dy) the other end, (stp, fp, dp) the newest trial.
    Four cases, by what the trial showed (Moré & Thuente, section 4):
      1. higher value than the best: a minimiser lies between them; take the cubic step if it is
         closer to stx than the quadratic (values and dx) step, else their mean;
      2. lower value, slope of opposite sign: bracketed; take whichever of the cubic and secant
         (on slopes) steps is farther from stp;
      3. lower value, same-sign slope that shrank: the cubic step if the cubic's minimiser lies
         beyond stp, else the bound; safeguarded to stay inside the interval;
      4. lower value, same-sign slope that did not shrink: the cubic through stp and sty if
         bracketed, else the bound in the direction of the step.
    Arithmetic is done in NumPy float64 scalars so that a division by zero gives inf/NaN as in C
    instead of raising. Returns ((stx, fx, dx, sty, fy, dy), new_step, bracketed).
    """
    stx, fx, dx, sty, fy, dy, stp, fp, dp = map(np.float64, (stx, fx, dx, sty, fy, dy, stp, fp, dp))
    with np.errstate(all="ignore"):
        sign_change = dx != 0.0 and dp * np.copysign(1.0, dx) < 0.0    # slopes of opposite sign
        if fp > fx:                                                    # case 1
            theta, gamma = _cubic(fx, fp, stx, stp, dx, dp)
            if stp < stx:
                gamma = -gamma
            r = ((gamma - dx) + theta) / (((gamma - dx) + gamma) + dp)
            cubic = stx + r * (stp - stx)
            quadratic = stx + ((dx / ((fx - fp) / (stp - stx) + dx)) / 2.0) * (stp - stx)
            if abs(cubic - stx) < abs(quadratic - stx):
                new = cubic
            else:
                new = cubic + (quadratic - cubic) / 2.0
            bracketed = True
        elif sign_change:                                              # case 2
            theta, gamma = _cubic(fx, fp, stx, stp, dx, dp)
            if stp > stx:
                gamma = -gamma
            r = ((gamma - dp) + theta) / (((gamma - dp) + gamma) + dx)
            cubic = stp + r * (stx - stp)
            secant = stp + (dp / (dp - dx)) * (stx - stp)
            new = cubic if abs(cubic - stp) > abs(secant - stp) else secant
            bracketed = True
        elif abs(dp) < abs(dx):                                        # case 3
            theta, gamma = _cubic(fx, fp, stx, stp, dx, dp)
            if stp > stx:             # gamma = 0 only when the cubic does not tend to infinity
                gamma = -gamma
            r = ((gamma - dp) + theta) / ((gamma + (dx - dp)) + gamma)
            if r < 0.0 and gamma != 0.0:
                cubic = stp + r * (stx - stp)
            else:
                cubic = stpmax if stp > stx else stpmin
            secant = stp + (dp / (dp - dx)) * (stx - stp)
            if bracketed:
                new = cubic if abs(cubic - stp) < abs(secant - stp) else secant
                if stp > stx:
                    new = min(stp + 0.66 * (sty - stp), new)
                else:
                    new = max(stp + 0.66 * (sty - stp), new)
            else:
                new = cubic if abs(cubic - stp) > abs(secant - stp) else secant
                new = max(stpmin, min(stpmax, new))
        elif bracketed:                                                # case 4
            theta, gamma = _cubic(fp, fy, stp, sty, dy, dp)
            if stp > sty:
                gamma = -gamma
            r = ((gamma - dp) + theta) / (((gamma - dp) + gamma) + dy)
            new = stp + r * (sty - stp)
        else:
            new = stpmax if stp > stx else stpmin

    # The new interval: a higher trial becomes the far end; otherwise the trial is the new best
    # point, and the old best becomes the far end when the slope changed sign.
    if fp > fx:
        sty, fy, dy = stp, fp, dp
    else:
        if sign_change:
            sty, fy, dy = stx, fx, dx
        stx, fx, dx = stp, fp, dp
    ends = tuple(float(v) for v in (stx, fx, dx, sty, fy, dy))
    return ends, float(new), bracketed


# ---------------------------------------------------------------- L-BFGS-B's line search

BIG_STEP = 1e10  # L-BFGS-B's step limit when nothing bounds the line


class Box(NamedTuple):
    lower: object      # (n,) arrays, -inf / +inf where a side is unbounded
    upper: object
    masks: tuple       # (has_lower, has_upper, fixed), see cauchy.box_masks
    constrained: bool  # some variable has a bound
    boxed: bool        # every variable has both


class Step(NamedTuple):
    x: object          # the accepted point
    f: float
    g: object
    d: object          # the search direction z - x
    step: float
    slope: float       # g_new'd
    slope0: float      # g'd at the start
    dd: float          # d'd


def max_step(xp, x, d, box, limit=BIG_STEP):
    """(a, i): the largest a <= limit keeping x + a d in the box, and the first variable that limits it."""
    has_lower, has_upper, _ = box.masks
    with quiet(xp):
        ratio = (xp.where(d < 0, box.lower, box.upper) - x) / d       # inf where that side is unbounded
    ratio = xp.where(((d < 0) & has_lower) | ((d > 0) & has_upper), xp.maximum(ratio, 0.0), xp.inf)
    first = int(xp.argmin(ratio))
    return min(limit, float(ratio[first])), first


def search_along(evaluate, x, f, g, z, box, first, maxls):
    """Line search from x (value f, gradient g) toward z, as L-BFGS-B does it.

    evaluate(point) -> (f, g). first: no iteration completed yet. maxls: evaluations allowed.
    Returns the accepted Step, or None when the search fails (not a descent direction, or maxls
    evaluations without an acceptable step).
    """
    xp = get_xp(x)
    d = z - x
    norm = float(xp.linalg.norm(d))
    if not box.constrained:
        step_max = BIG_STEP
    elif first:
        step_max = 1.0
    else:
        step_max = max_step(xp, x, d, box)[0]
    # Step 1 reaches z. Only the very first direction (plain steepest descent, unscaled) starts at
    # 1/||d|| instead, unless every variable is boxed.
    step = min(1.0 / norm, step_max) if first and not box.boxed else 1.0
    slope0 = float(g @ d)
    if not slope0 < 0.0:
        return None                              # not a descent direction
    search = MoreThuente(f, slope0, step, step_max)
    if search.status == ERROR:
        return None
    tried, last = 0, None
    while search.status == FG:
        if tried >= maxls:
            return None
        step = search.step
        if last is None or step != last.step:    # (SciPy does not re-evaluate an unchanged point)
            x_new = z if step == 1.0 else xp.minimum(xp.maximum(x + step * d, box.lower), box.upper)
            f_new, g_new = evaluate(x_new)
        tried += 1
        last = Step(x_new, f_new, g_new, d, step, float(g_new @ d), slope0, norm * norm)
        search.update(f_new, last.slope)
    return last
