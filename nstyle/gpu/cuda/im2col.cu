// im2col_band and its adjoint col2im_band: a convolution's lowering to a matrix product, a band of
// output rows at a time (nstyle/gpu/conv.py). Both are gathers: one thread per element written.
// Offsets into whole tensors are long long; positions within a plane or band are int (checked on the host).

template<typename T>
__global__ void im2col_band(const T* __restrict__ x, T* __restrict__ cols,
                            int C, int H, int W, int kh, int kw, int stride, int pad,
                            int r0, int nrows, int wo) {
    // cols[k][p], k = (c*kh + ki)*kw + kj, p = rr*wo + s over output rows r0 .. r0+nrows-1.
    const int P = nrows * wo;
    const int K = C * kh * kw;
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= P) return;
    const int rr = p / wo;
    const int s = p - rr * wo;
    const int y_base = (r0 + rr) * stride - pad;
    const int x_base = s * stride - pad;
    for (int k = blockIdx.y; k < K; k += gridDim.y) {
        const int c = k / (kh * kw);
        const int t = k - c * (kh * kw);
        const int ki = t / kw;
        const int kj = t - ki * kw;
        const int y = y_base + ki;
        const int xc = x_base + kj;
        T v = T(0);
        if (y >= 0 && y < H && xc >= 0 && xc < W) v = x[((long long)c * H + y) * W + xc];
        cols[(long long)k * P + p] = v;
    }
}

template<typename T>
__global__ void col2im_band(const T* __restrict__ cols, T* __restrict__ dx,
                            int C, int H, int W, int kh, int kw, int stride, int pad,
                            int r0, int nrows, int wo, int y0, int ny) {
    // dx[c][y][x] += sum over the taps (ki, kj) of this band that read (y, x) of cols[k][p].
    // Input (y, x) is read by tap ki of output row r when r*stride - pad + ki == y.
    const int q = blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= ny * W) return;
    const int yy = q / W;
    const int xx = q - yy * W;
    const int y = y0 + yy;
    const int P = nrows * wo;
    for (int c = blockIdx.y; c < C; c += gridDim.y) {
        T acc = T(0);
        for (int ki = 0; ki < kh; ++ki) {
            const int ty = y + pad - ki;
            if (ty < 0 || ty % stride != 0) continue;
            const int r = ty / stride - r0;
            if (r < 0 || r >= nrows) continue;
            for (int kj = 0; kj < kw; ++kj) {
                const int tx = xx + pad - kj;
                if (tx < 0 || tx % stride != 0) continue;
                const int s = tx / stride;
                if (s >= wo) continue;
                acc += cols[(long long)((c * kh + ki) * kw + kj) * P + r * wo + s];
            }
        }
        dx[((long long)c * H + y) * W + xx] += acc;
    }
}
