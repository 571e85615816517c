"""Hand-written implementations the generated modules are measured against.

Each `*_step(params, ...)` returns a function running one full training step (forward,
backward, SGD update) on `params` (a dict keyed like the generated module's) and
returning the loss. They compute exactly what the benchmark specs compute, so the
benchmark checks that every implementation agrees before it times anything.
"""

from __future__ import annotations

import math

import numpy as np

MLP_KEYS = ("h1.W", "h1.b", "h2.W", "h2.b", "logits.W", "logits.b")
MAZUR_KEYS = ("W1", "b1", "W2", "b2")


# ---- (A) 784-256-256-10 MLP, ReLU, softmax cross-entropy, plain SGD ---------------------------

def numpy_mlp_step(params: dict, x: np.ndarray, y: np.ndarray, lr: float):
    """A careful NumPy step: fused softmax-CE gradient, `x.T @ g` weight gradients, no
    gradient for the first layer's input, in-place bias adds, ReLU, masks and updates."""
    W1, b1, W2, b2, W3, b3 = (params[k] for k in MLP_KEYS)
    n = x.shape[0]
    rows = np.arange(n)

    def step():
        nonlocal W1, b1, W2, b2, W3, b3  # `-=` below updates the arrays in place
        h1 = x @ W1
        h1 += b1
        np.maximum(h1, 0.0, out=h1)
        h2 = h1 @ W2
        h2 += b2
        np.maximum(h2, 0.0, out=h2)
        z = h2 @ W3
        z += b3
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        loss = (np.log(s).sum() - z[rows, y].sum()) / n
        e /= s * n                      # d_logits = (softmax - onehot) / n
        e[rows, y] -= 1.0 / n
        dW3 = h2.T @ e
        db3 = e.sum(axis=0)
        dh2 = e @ W3.T
        dh2 *= h2 > 0.0
        dW2 = h1.T @ dh2
        db2 = dh2.sum(axis=0)
        dh1 = dh2 @ W2.T
        dh1 *= h1 > 0.0
        dW1 = x.T @ dh1
        db1 = dh1.sum(axis=0)
        W1 -= lr * dW1
        b1 -= lr * db1
        W2 -= lr * dW2
        b2 -= lr * db2
        W3 -= lr * dW3
        b3 -= lr * db3
        return loss

    return step


def numpy_mlp_step_buffers(params: dict, x: np.ndarray, y: np.ndarray, lr: float):
    """The careful step tuned further, as an expert chasing microseconds would: every product
    and activation written into a buffer allocated once (`out=`), boolean relu masks, and the
    learning rate folded into the softmax gradient. `out=` and the fancy-indexed gradient
    are not array-API code, so nnc does not emit them; this shows what a NumPy-only step
    can still gain."""
    W1, b1, W2, b2, W3, b3 = (params[k] for k in MLP_KEYS)
    n = x.shape[0]
    rows = np.arange(n)
    h1, h2, dh1, dh2 = (np.empty((n, 256), x.dtype) for _ in range(4))
    z = np.empty((n, 10), x.dtype)
    dW1, dW2, dW3 = np.empty_like(W1), np.empty_like(W2), np.empty_like(W3)

    def step():
        nonlocal W1, b1, W2, b2, W3, b3, h1, h2, z, dh1, dh2  # in-place operators on all of them
        np.matmul(x, W1, out=h1)
        h1 += b1
        np.maximum(h1, 0.0, out=h1)
        np.matmul(h1, W2, out=h2)
        h2 += b2
        np.maximum(h2, 0.0, out=h2)
        np.matmul(h2, W3, out=z)
        z += b3
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        loss = (np.log(s).sum() - z[rows, y].sum()) / n
        e /= s * (n / lr)               # lr * d_logits
        e[rows, y] -= lr / n
        np.matmul(h2.T, e, out=dW3)
        db3 = e.sum(axis=0)
        np.matmul(e, W3.T, out=dh2)
        dh2 *= h2 > 0.0
        np.matmul(h1.T, dh2, out=dW2)
        db2 = dh2.sum(axis=0)
        np.matmul(dh2, W2.T, out=dh1)
        dh1 *= h1 > 0.0
        np.matmul(x.T, dh1, out=dW1)
        db1 = dh1.sum(axis=0)
        W1 -= dW1
        b1 -= db1
        W2 -= dW2
        b2 -= db2
        W3 -= dW3
        b3 -= db3
        return loss

    return step


def numpy_mlp_step_buffers_T(params: dict, x: np.ndarray, y: np.ndarray, lr: float):
    """`numpy_mlp_step_buffers` plus the transposed route for the one product OpenBLAS is slow
    at with few rows: at 6-32 rows, `dh1 = (W2 @ dh2.T).T` into a (256, n) buffer copied back to
    rows, instead of `dh2 @ W2.T`. nnc already takes that route (`_NumPy.matmul`); this step has
    it too, together with what nnc does not emit: `out=` buffers, relu `np.maximum(h, 0, out=h)`
    in place, boolean masks multiplied in, `np.add.reduce` bias sums and the softmax-CE gradient
    built from `exp(z - max)` and `z[rows, y]` (no log-softmax and no one-hot arrays). Measured
    (basecheck session, CPU 1, 120-150 interleaved rounds): 0.94-0.96 of nnc's step at batch 32,
    level at 128 and 1024; `numpy_mlp_step_buffers` is 0.955-0.99 of nnc at 32."""
    W1, b1, W2, b2, W3, b3 = (params[k] for k in MLP_KEYS)
    n = x.shape[0]
    rows = np.arange(n)
    h1, h2, dh1, dh2 = (np.empty((n, 256), x.dtype) for _ in range(4))
    z = np.empty((n, 10), x.dtype)
    dW1, dW2, dW3 = np.empty_like(W1), np.empty_like(W2), np.empty_like(W3)
    dh1_t = np.empty((256, n), x.dtype)
    transposed = 6 <= n <= 32

    def step():
        nonlocal W1, b1, W2, b2, W3, b3, h1, h2, z, dh1, dh2  # in-place operators on all of them
        np.matmul(x, W1, out=h1)
        h1 += b1
        np.maximum(h1, 0.0, out=h1)
        np.matmul(h1, W2, out=h2)
        h2 += b2
        np.maximum(h2, 0.0, out=h2)
        np.matmul(h2, W3, out=z)
        z += b3
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        loss = (np.log(s).sum() - z[rows, y].sum()) / n
        e /= s * (n / lr)               # lr * d_logits
        e[rows, y] -= lr / n
        np.matmul(h2.T, e, out=dW3)
        db3 = e.sum(axis=0)
        np.matmul(e, W3.T, out=dh2)
        dh2 *= h2 > 0.0
        np.matmul(h1.T, dh2, out=dW2)
        db2 = dh2.sum(axis=0)
        if transposed:
            np.matmul(W2, dh2.T, out=dh1_t)
            dh1[...] = dh1_t.T
        else:
            np.matmul(dh2, W2.T, out=dh1)
        dh1 *= h1 > 0.0
        np.matmul(x.T, dh1, out=dW1)
        db1 = dh1.sum(axis=0)
        W1 -= dW1
        b1 -= db1
        W2 -= dW2
        b2 -= db2
        W3 -= dW3
        b3 -= db3
        return loss

    return step


def mlp_saved_bytes_hand(batch: int, itemsize: int = 4) -> int:
    """What the hand-written step keeps from forward for backward: h1, h2 and the
    softmax rows (the labels are an input)."""
    return batch * (256 + 256 + 10) * itemsize


def mlp_products(batch: int, W: list[np.ndarray], x: np.ndarray):
    """Only the step's 8 matrix products, same shapes (a floor for the whole step)."""
    W1, W2, W3 = W
    g3 = np.ones((batch, 10), x.dtype)

    def step():
        h1 = x @ W1
        h2 = h1 @ W2
        h2 @ W3
        h2.T @ g3
        d2 = g3 @ W3.T
        h1.T @ d2
        d1 = d2 @ W2.T
        x.T @ d1

    return step


def torch_mlp_step(params: dict, x, y, lr: float):
    """PyTorch eager, as a user writes it: torch.nn, loss.backward(), torch.optim.SGD."""
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                torch.nn.ReLU(), torch.nn.Linear(256, 10))
    load_torch_mlp(model, params)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xt), yt)
        loss.backward()
        opt.step()
        return loss

    return step, model


def load_torch_mlp(model, params: dict) -> None:
    import torch

    with torch.no_grad():
        for layer, key in zip((model[0], model[2], model[4]), ("h1", "h2", "logits")):
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(params[f"{key}.W"].T)))
            layer.bias.copy_(torch.from_numpy(params[f"{key}.b"]))


def torch_mlp_params(model) -> dict:
    return {f"{key}.{n}": (t.detach().numpy().T if n == "W" else t.detach().numpy()).copy()
            for layer, key in zip((model[0], model[2], model[4]), ("h1", "h2", "logits"))
            for n, t in (("W", layer.weight), ("b", layer.bias))}


def jax_mlp_step(lr: float):
    """jax.jit of the same step (value_and_grad + SGD), parameters donated for reuse."""
    import jax
    import jax.numpy as jnp

    def loss_fn(p, x, y):
        h1 = jax.nn.relu(x @ p["h1.W"] + p["h1.b"])
        h2 = jax.nn.relu(h1 @ p["h2.W"] + p["h2.b"])
        logits = h2 @ p["logits.W"] + p["logits.b"]
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    @jax.jit
    def step(p, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        return {k: p[k] - lr * g[k] for k in p}, loss

    return step


# ---- (B) the 2-2-2 sigmoid network of worked example 1: one sample, sse, plain SGD ------------

def numpy_mazur_step(params: dict, i: np.ndarray, t: np.ndarray, lr: float):
    """A careful NumPy step for worked example 1, updating the arrays in `params` in place."""
    W1, b1, W2, b2 = (params[k] for k in MAZUR_KEYS)

    def step():
        nonlocal W1, b1, W2, b2  # `-=` below updates the arrays in place
        out_h = 1.0 / (1.0 + np.exp(-(W1 @ i + b1)))
        out_o = 1.0 / (1.0 + np.exp(-(W2 @ out_h + b2)))
        r = out_o - t
        loss = 0.5 * (r @ r)
        d_net_o = r * out_o * (1.0 - out_o)
        d_net_h = (W2.T @ d_net_o) * out_h * (1.0 - out_h)
        W2 -= lr * np.outer(d_net_o, out_h)
        b2 -= lr * d_net_o.sum()
        W1 -= lr * np.outer(d_net_h, i)
        b1 -= lr * d_net_h.sum()
        return loss

    return step


def numpy_mazur_step_dot(params: dict, i: np.ndarray, t: np.ndarray, lr: float):
    """Worked example 1 tuned further: `ndarray.dot` called directly (nnc reaches it through
    `_NumPy.matmul`, 0.12 us a product more), `1 / (1 + exp(-x))` (0.1 us cheaper than nnc's
    `exp(-logaddexp(0, -x))` on 2 elements and 2.6x faster on 1024x256 float32, but exp
    overflows, with a warning, below x = -88 in float32) and no input check or params dict."""
    W1, b1, W2, b2 = (params[k] for k in MAZUR_KEYS)

    def step():
        nonlocal W1, b1, W2, b2  # `-=` below updates the arrays in place
        out_h = 1.0 / (1.0 + np.exp(-(W1.dot(i) + b1)))
        out_o = 1.0 / (1.0 + np.exp(-(W2.dot(out_h) + b2)))
        r = out_o - t
        loss = 0.5 * r.dot(r)
        d_o = r * out_o * (1.0 - out_o)
        d_h = d_o.dot(W2) * out_h * (1.0 - out_h)
        d_o *= lr
        d_h *= lr
        W2 -= d_o[:, None] * out_h
        b2 -= d_o.sum()
        W1 -= d_h[:, None] * i
        b1 -= d_h.sum()
        return loss

    return step


def numpy_mazur_step_scalar(params: dict, i: np.ndarray, t: np.ndarray, lr: float):
    """Worked example 1 with the arithmetic in Python floats: the 10 parameters are read out
    of the same NumPy arrays (`tolist`/`item` on flat views) and written back into them in
    place each step, the two inputs read with `tolist`, and the rest is ~60 float operations
    and 4 `math.exp` calls, with no ufunc call at all (one NumPy call on a 2-element array
    costs about 0.6 us, and the array steps make about 35). Float64 results equal the array
    steps' to 1e-16; the sigmoid branches on the sign so that `math.exp` never overflows.
    Measured (basecheck session, CPU 1, 40-60 interleaved rounds): 0.11-0.12 of nnc's step."""
    W1, b1, W2, b2 = (params[k] for k in MAZUR_KEYS)
    w1, w2, b1v, b2v = W1.reshape(4), W2.reshape(4), b1.reshape(1), b2.reshape(1)  # views
    exp = math.exp

    def sigmoid(v):
        if v >= 0.0:
            return 1.0 / (1.0 + exp(-v))
        e = exp(v)
        return e / (1.0 + e)

    def step():
        a, b, c, d = w1.tolist()
        e, f, g, h = w2.tolist()
        c1, c2 = b1v.item(), b2v.item()
        i0, i1 = i.tolist()
        t0, t1 = t.tolist()
        h0 = sigmoid(a * i0 + b * i1 + c1)
        h1 = sigmoid(c * i0 + d * i1 + c1)
        o0 = sigmoid(e * h0 + f * h1 + c2)
        o1 = sigmoid(g * h0 + h * h1 + c2)
        r0, r1 = o0 - t0, o1 - t1
        do0 = r0 * o0 * (1.0 - o0) * lr  # lr * d_net_o
        do1 = r1 * o1 * (1.0 - o1) * lr
        dh0 = (e * do0 + g * do1) * h0 * (1.0 - h0)  # lr * d_net_h
        dh1 = (f * do0 + h * do1) * h1 * (1.0 - h1)
        w2[:] = (e - do0 * h0, f - do0 * h1, g - do1 * h0, h - do1 * h1)
        b2v[0] = c2 - (do0 + do1)
        w1[:] = (a - dh0 * i0, b - dh0 * i1, c - dh1 * i0, d - dh1 * i1)
        b1v[0] = c1 - (dh0 + dh1)
        return 0.5 * (r0 * r0 + r1 * r1)

    return step


def torch_mazur_step(params: dict, i, t, lr: float):
    """PyTorch eager: tensors with requires_grad, loss.backward(), torch.optim.SGD."""
    import torch

    ps = {k: torch.tensor(params[k], requires_grad=True) for k in MAZUR_KEYS}
    opt = torch.optim.SGD(list(ps.values()), lr=lr)
    it, tt = torch.from_numpy(i), torch.from_numpy(t)

    def step():
        opt.zero_grad(set_to_none=True)
        out_h = torch.sigmoid(ps["W1"] @ it + ps["b1"])
        out_o = torch.sigmoid(ps["W2"] @ out_h + ps["b2"])
        loss = 0.5 * torch.sum((tt - out_o) ** 2)
        loss.backward()
        opt.step()
        return loss

    return step, ps


def jax_mazur_step(lr: float):
    import jax
    import jax.numpy as jnp

    def loss_fn(p, i, t):
        out_h = jax.nn.sigmoid(p["W1"] @ i + p["b1"])
        out_o = jax.nn.sigmoid(p["W2"] @ out_h + p["b2"])
        return 0.5 * jnp.sum((t - out_o) ** 2)

    @jax.jit
    def step(p, i, t):
        loss, g = jax.value_and_grad(loss_fn)(p, i, t)
        return {k: p[k] - lr * g[k] for k in p}, loss

    return step
