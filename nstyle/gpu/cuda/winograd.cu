// The tile transforms of Winograd F(2x2, 3x3) (nstyle/gpu/conv.py; the algebra: nstyle/reference/winograd.py).
// Offsets into whole tensors are long long; positions within a band are int (checked on the host).

// Winograd F(2x2, 3x3) (Lavin & Gray, 2016): a 3x3 stride-1 convolution computed per 2x2 output tile from a
// 4x4 input tile as Y = A^T [ (G g G^T) . (B^T d B) ] A, summed over input channels by 16 matrix products.
// B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  A^T = [1 1 1 0; 0 1 -1 -1]  (G is applied on the host).

template<typename T>
__global__ void winograd_input_f2(const T* __restrict__ x, T* __restrict__ v,
                                  int C, int H, int W, int pad, int ty0, int nty, int tw) {
    // v[e][c][t], e = 4*i + j the entry of B^T d B, t = (ty - ty0)*tw + tx a tile of tile rows ty0..ty0+nty-1;
    // tile (ty, tx) reads input rows 2*ty - pad .. +3 and columns 2*tx - pad .. +3 (zero outside).
    const int nt = nty * tw;
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= nt) return;
    const int r = t / tw;
    const int tx = t - r * tw;
    const int y0 = 2 * (ty0 + r) - pad;
    const int x0 = 2 * tx - pad;
    const long long step = (long long)C * nt;
    for (int c = blockIdx.y; c < C; c += gridDim.y) {
        const T* src = x + (long long)c * H * W;
        T d[4][4];
        for (int i = 0; i < 4; ++i) {
            const int y = y0 + i;
            for (int j = 0; j < 4; ++j) {
                const int xc = x0 + j;
                d[i][j] = (y >= 0 && y < H && xc >= 0 && xc < W) ? src[(long long)y * W + xc] : T(0);
            }
        }
        T b[4][4];
        for (int j = 0; j < 4; ++j) {          // B^T d
            b[0][j] = d[0][j] - d[2][j];
            b[1][j] = d[1][j] + d[2][j];
            b[2][j] = d[2][j] - d[1][j];
            b[3][j] = d[1][j] - d[3][j];
        }
        T* dst = v + (long long)c * nt + t;
        for (int i = 0; i < 4; ++i) {          // (B^T d) B
            dst[(4 * i + 0) * step] = b[i][0] - b[i][2];
            dst[(4 * i + 1) * step] = b[i][1] + b[i][2];
            dst[(4 * i + 2) * step] = b[i][2] - b[i][1];
            dst[(4 * i + 3) * step] = b[i][1] - b[i][3];
        }
    }
}

template<typename T>
__global__ void winograd_output_f2(const T* __restrict__ m, const T* __restrict__ bias, T* __restrict__ out,
                                   int O, int Ho, int Wo, int ty0, int nty, int tw, int has_bias) {
    // out[o][2*ty + a][2*tx + b] = (A^T m A)[a][b] (+ bias[o]) for the tiles of this band, m[e][o][t].
    const int nt = nty * tw;
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= nt) return;
    const int r = t / tw;
    const int tx = t - r * tw;
    const int oy = 2 * (ty0 + r);
    const int ox = 2 * tx;
    const long long step = (long long)O * nt;
    for (int o = blockIdx.y; o < O; o += gridDim.y) {
        const T* src = m + (long long)o * nt + t;
        T q[4][4];
        for (int e = 0; e < 16; ++e) q[e / 4][e % 4] = src[e * step];
        T a[2][4];
        for (int j = 0; j < 4; ++j) {          // A^T q
            a[0][j] = q[0][j] + q[1][j] + q[2][j];
            a[1][j] = q[1][j] - q[2][j] - q[3][j];
        }
        const T b0 = has_bias ? bias[o] : T(0);
        T* dst = out + (long long)o * Ho * Wo;
        for (int i = 0; i < 2; ++i) {          // (A^T q) A
            const T y[2] = {a[i][0] + a[i][1] + a[i][2], a[i][1] - a[i][2] - a[i][3]};
            for (int j = 0; j < 2; ++j)
                if (oy + i < Ho && ox + j < Wo) dst[(long long)(oy + i) * Wo + ox + j] = y[j] + b0;
        }
    }
}
