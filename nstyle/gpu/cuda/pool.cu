// Average and max pooling, forward and backward; the backwards are gathers (nstyle/gpu/pool.py).
// Offsets into whole tensors are long long; positions within a plane are int (checked on the host).

template<typename T>
__global__ void avg_pool_fwd(const T* __restrict__ x, T* __restrict__ out, int planes,
                             int H, int W, int k, int s, int ho, int wo, T inv_area) {
    const int q = blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= ho * wo) return;
    const int r = q / wo;
    const int cc = q - r * wo;
    for (int plane = blockIdx.y; plane < planes; plane += gridDim.y) {
        const T* src = x + (long long)plane * H * W + (long long)(r * s) * W + cc * s;
        T acc = T(0);
        for (int di = 0; di < k; ++di)
            for (int dj = 0; dj < k; ++dj)
                acc += src[di * W + dj];
        out[(long long)plane * ho * wo + q] = acc * inv_area;
    }
}

// The windows lo..hi (n_out of them, size k, stride s) that contain input index i along one axis;
// none (lo > hi) for the floored-off border. emulation.py's pool_window_range transcribes it.
__device__ inline void pool_window_range(int i, int k, int s, int n_out, int& lo, int& hi) {
    lo = (i >= k) ? (i - k) / s + 1 : 0;
    hi = min(i / s, n_out - 1);
}

template<typename T>
__global__ void avg_pool_bwd(const T* __restrict__ dout, T* __restrict__ dx, int planes,
                             int H, int W, int k, int s, int ho, int wo, T inv_area) {
    // Input (y, x) lies in the windows r = r_lo..r_hi (rows) and c = c_lo..c_hi (columns):
    // r*s <= y <= r*s + k - 1; none of them for the floored-off border, which gets 0.
    const int q = blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= H * W) return;
    const int y = q / W;
    const int xx = q - y * W;
    int r_lo, r_hi, c_lo, c_hi;
    pool_window_range(y, k, s, ho, r_lo, r_hi);
    pool_window_range(xx, k, s, wo, c_lo, c_hi);
    for (int plane = blockIdx.y; plane < planes; plane += gridDim.y) {
        const T* g = dout + (long long)plane * ho * wo;
        T acc = T(0);
        for (int r = r_lo; r <= r_hi; ++r)
            for (int c = c_lo; c <= c_hi; ++c)
                acc += g[r * wo + c];
        dx[(long long)plane * H * W + q] = acc * inv_area;
    }
}

template<typename T, typename I>
__global__ void max_pool_fwd(const T* __restrict__ x, T* __restrict__ out, I* __restrict__ winner,
                             int planes, int H, int W, int k, int s, int ho, int wo) {
    // Strict '>' keeps the first maximum on ties, as the CPU path does.
    const int q = blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= ho * wo) return;
    const int r = q / wo;
    const int cc = q - r * wo;
    for (int plane = blockIdx.y; plane < planes; plane += gridDim.y) {
        const T* src = x + (long long)plane * H * W + (long long)(r * s) * W + cc * s;
        T best = src[0];
        int arg = 0;
        for (int idx = 1; idx < k * k; ++idx) {
            const int di = idx / k;
            const int dj = idx - di * k;
            const T v = src[di * W + dj];
            if (v > best) { best = v; arg = idx; }
        }
        out[(long long)plane * ho * wo + q] = best;
        winner[(long long)plane * ho * wo + q] = (I)arg;
    }
}

template<typename T, typename I>
__global__ void max_pool_bwd(const T* __restrict__ dout, const I* __restrict__ winner, T* __restrict__ dx,
                             int planes, int H, int W, int k, int s, int ho, int wo) {
    // Input (y, x) receives dout of every window that contains it and chose it as its winner.
    const int q = blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= H * W) return;
    const int y = q / W;
    const int xx = q - y * W;
    int r_lo, r_hi, c_lo, c_hi;
    pool_window_range(y, k, s, ho, r_lo, r_hi);
    pool_window_range(xx, k, s, wo, c_lo, c_hi);
    for (int plane = blockIdx.y; plane < planes; plane += gridDim.y) {
        const long long base = (long long)plane * ho * wo;
        T acc = T(0);
        for (int r = r_lo; r <= r_hi; ++r)
            for (int c = c_lo; c <= c_hi; ++c)
                if ((int)winner[base + r * wo + c] == (y - r * s) * k + (xx - c * s))
                    acc += dout[base + r * wo + c];
        dx[(long long)plane * H * W + q] = acc;
    }
}
