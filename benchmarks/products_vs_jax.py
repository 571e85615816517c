"""Where jax.jit gains on the generated NumPy step of (A) at batch 32 (docs/performance.md).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE taskset -c 1 python benchmarks/products_vs_jax.py [--batch 32] [--rounds 9]

Times the four large matrix products of the 784-256-256-10 step, each as the generated code
runs it (`_NumPy.matmul`, OpenBLAS underneath) and as `jax.jit` of the same expression (XLA's
CPU kernel), in turns in one process; medians of the rounds and their ratio. The two are
checked to agree to float32 rounding.
"""

from __future__ import annotations

import argparse
import statistics
import timeit

import numpy as np

from nnc.runtime.numpy_fast import _NumPy


def products(batch: int, rng: np.random.Generator) -> dict:
    """name -> (the expression, as jax.jit takes it; as the generated code runs it; operands)."""
    def draw(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    x, h1, g, W1, W2 = draw(batch, 784), draw(batch, 256), draw(batch, 256), draw(784, 256), draw(256, 256)
    mm = _NumPy.matmul
    return {
        "x @ W1      (forward, layer 1)": (lambda a, b: a @ b, lambda a, b: mm(a, b), (x, W1)),
        "x.T @ g1    (weight gradient 1)": (lambda a, b: a.T @ b, lambda a, b: mm(a.T, b), (x, g)),
        "h1 @ W2     (forward, layer 2)": (lambda a, b: a @ b, lambda a, b: mm(a, b), (h1, W2)),
        "g2 @ W2.T   (input gradient 2)": (lambda a, b: a @ b.T, lambda a, b: mm(a, b.T), (g, W2)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    import jax
    import jax.numpy as jnp

    timed: dict = {}
    for name, (expression, generated, (a, b)) in products(args.batch, np.random.default_rng(0)).items():
        jitted, ja, jb = jax.jit(expression), jnp.asarray(a), jnp.asarray(b)
        want = np.asarray(jitted(ja, jb))
        np.testing.assert_allclose(generated(a, b), want, rtol=2e-4, atol=2e-4 * np.abs(want).max())
        timed[name] = (lambda a=a, b=b, f=generated: f(a, b),
                       lambda jitted=jitted, ja=ja, jb=jb: jitted(ja, jb).block_until_ready())
    seconds: dict = {}
    for _ in range(args.rounds):
        for name, pair in timed.items():
            for lib, call in zip(("numpy", "jax"), pair):
                seconds.setdefault((name, lib), []).append(min(timeit.repeat(call, number=100, repeat=3)) / 100)
    print(f"batch {args.batch}, float32, medians of {args.rounds} rounds; jax {jax.__version__}, numpy {np.__version__}")
    for name in timed:
        ours, theirs = (statistics.median(seconds[(name, lib)]) for lib in ("numpy", "jax"))
        print(f"    {name}   numpy {ours * 1e6:7.1f} us   jax.jit {theirs * 1e6:7.1f} us   ratio {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
