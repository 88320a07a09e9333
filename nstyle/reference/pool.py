"""2-D max and average pooling: forward and backward.

Shapes: x (N, C, H, W) -> out (N, C, Ho, Wo) with ``Ho = (H - k) // s + 1`` (floor, no padding: what
PyTorch does by default, so an odd-sized map drops its last row or column). Any kernel size k and
stride s (s defaults to k).

The fast versions loop over the k*k offsets inside a window, each step a strided view of the whole
tensor; the ``*_naive`` versions loop over windows.
"""
from ..backend import get_xp


def _geometry(x, kernel_size, stride):
    if x.ndim != 4:
        raise ValueError(f"pooling expects (N, C, H, W); got shape {x.shape}")
    k = int(kernel_size)
    s = k if stride is None else int(stride)
    if k < 1 or s < 1:
        raise ValueError(f"pooling: kernel size and stride must be >= 1 (got {k}, {s})")
    h, w = x.shape[2], x.shape[3]
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"pooling: a {h}x{w} map is smaller than the {k}x{k} window")
    return k, s, ho, wo


def _window(x, di, dj, s, ho, wo):
    """The element at offset (di, dj) of every window: a strided view of shape (N, C, Ho, Wo)."""
    return x[:, :, di:di + s * (ho - 1) + 1:s, dj:dj + s * (wo - 1) + 1:s]


def avg_pool2d_forward(x, kernel_size=2, stride=None):
    """out = mean of each k x k window. Returns (out, cache)."""
    xp = get_xp(x)
    k, s, ho, wo = _geometry(x, kernel_size, stride)
    out = xp.zeros((x.shape[0], x.shape[1], ho, wo), dtype=x.dtype)
    for di in range(k):
        for dj in range(k):
            out += _window(x, di, dj, s, ho, wo)
    out *= 1.0 / (k * k)
    return out, {"x_shape": x.shape, "k": k, "s": s}


def avg_pool2d_backward(dout, cache):
    """dx: each input element receives dout/(k*k) from every window that contains it.

    Derivation: out[w] = (1/k^2) sum_{i in w} x[i] is linear, so dL/dx[i] = sum_{w containing i}
    dL/dout[w] / k^2. Elements in no window (the floored-off border) get 0.
    """
    xp = get_xp(dout)
    k, s = cache["k"], cache["s"]
    ho, wo = dout.shape[2], dout.shape[3]
    dx = xp.zeros(cache["x_shape"], dtype=dout.dtype)
    share = dout * (1.0 / (k * k))
    for di in range(k):
        for dj in range(k):
            _window(dx, di, dj, s, ho, wo)[...] += share
    return dx


def max_pool2d_forward(x, kernel_size=2, stride=None):
    """out = max of each k x k window. The cache holds which offset won (the first one on ties)."""
    xp = get_xp(x)
    k, s, ho, wo = _geometry(x, kernel_size, stride)
    out = _window(x, 0, 0, s, ho, wo).copy()
    winner = xp.zeros(out.shape, dtype=xp.uint8 if k * k < 256 else xp.int32)
    for idx in range(1, k * k):
        cand = _window(x, idx // k, idx % k, s, ho, wo)
        better = cand > out  # strict: an earlier offset keeps a tie, as PyTorch's CPU kernel does
        xp.copyto(winner, idx, where=better)
        xp.copyto(out, cand, where=better)
    return out, {"x_shape": x.shape, "k": k, "s": s, "winner": winner}


def max_pool2d_backward(dout, cache):
    """dx: the whole of dout goes to the element that was the maximum of its window.

    Derivation: locally out[w] = x[argmax_w], so dout[w]/dx[i] is 1 for the winner and 0 for the rest
    (at exact ties the function is not differentiable; we pick the winner the forward picked).
    """
    xp = get_xp(dout)
    k, s, winner = cache["k"], cache["s"], cache["winner"]
    ho, wo = dout.shape[2], dout.shape[3]
    dx = xp.zeros(cache["x_shape"], dtype=dout.dtype)
    for idx in range(k * k):
        _window(dx, idx // k, idx % k, s, ho, wo)[...] += xp.where(winner == idx, dout, 0)
    return dx


def avg_pool2d_forward_naive(x, kernel_size=2, stride=None):
    xp = get_xp(x)
    k, s, ho, wo = _geometry(x, kernel_size, stride)
    out = xp.zeros((x.shape[0], x.shape[1], ho, wo), dtype=x.dtype)
    for r in range(ho):
        for c in range(wo):
            out[:, :, r, c] = x[:, :, r * s:r * s + k, c * s:c * s + k].mean(axis=(2, 3))
    return out, {"x_shape": x.shape, "k": k, "s": s}


def avg_pool2d_backward_naive(dout, cache):
    xp = get_xp(dout)
    k, s = cache["k"], cache["s"]
    dx = xp.zeros(cache["x_shape"], dtype=dout.dtype)
    for r in range(dout.shape[2]):
        for c in range(dout.shape[3]):
            dx[:, :, r * s:r * s + k, c * s:c * s + k] += dout[:, :, r:r + 1, c:c + 1] / (k * k)
    return dx


def max_pool2d_forward_naive(x, kernel_size=2, stride=None):
    xp = get_xp(x)
    k, s, ho, wo = _geometry(x, kernel_size, stride)
    out = xp.zeros((x.shape[0], x.shape[1], ho, wo), dtype=x.dtype)
    for n in range(x.shape[0]):
        for ch in range(x.shape[1]):
            for r in range(ho):
                for c in range(wo):
                    out[n, ch, r, c] = x[n, ch, r * s:r * s + k, c * s:c * s + k].max()
    return out, {"x": x, "x_shape": x.shape, "k": k, "s": s}


def max_pool2d_backward_naive(dout, cache):
    """Reference: find each window's first maximum again and send the gradient there."""
    xp = get_xp(dout)
    x, k, s = cache["x"], cache["k"], cache["s"]
    dx = xp.zeros(cache["x_shape"], dtype=dout.dtype)
    for n in range(x.shape[0]):
        for ch in range(x.shape[1]):
            for r in range(dout.shape[2]):
                for c in range(dout.shape[3]):
                    win = x[n, ch, r * s:r * s + k, c * s:c * s + k]
                    i = int(win.argmax())  # argmax returns the first maximum, matching the fast path
                    dx[n, ch, r * s + i // k, c * s + i % k] += dout[n, ch, r, c]
    return dx
