"""The optimizer's own cost: L-BFGS-B iterations, SciPy's and nstyle's, on a cheap bounded quadratic
over an image's worth of variables (lbfgs_cases.py, as bench/bench_lbfgs.py). The objective's share
(a few passes over the variables per evaluation) is inside these times; one-off setup too."""
import lbfgs_cases

ITERATIONS = 10


class LbfgsbIterations:
    params = (["scipy", "nstyle"], [256, 512])
    param_names = ["implementation", "size"]
    timeout = 300

    def setup(self, implementation, size):
        if implementation == "nstyle":
            try:
                lbfgs_cases.nstyle_lbfgsb()
            except ImportError as exc:
                raise NotImplementedError(str(exc)) from exc
        self.run = lbfgs_cases.run_nstyle if implementation == "nstyle" else lbfgs_cases.run_scipy
        self.n = 3 * size * size

    def time_ten_iterations(self, implementation, size):
        self.run(self.n, ITERATIONS)

    def peakmem_ten_iterations(self, implementation, size):
        self.run(self.n, ITERATIONS)
