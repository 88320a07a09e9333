// ReLU forward with its mask in one pass (nstyle/gpu/relu.py).

template<typename T>
__global__ void relu_fwd(const T* x, T* y, bool* __restrict__ mask, long long n) {
    // x and y may be the same array (in place): each thread reads its element before writing it.
    // 'v <= 0 ? 0 : v' passes NaN through, like NumPy's maximum, so a NaN still reaches the loss.
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const T v = x[i];
        mask[i] = v > T(0);
        y[i] = (v <= T(0)) ? T(0) : v;
    }
}
