"""Differential test against PyTorch: the same spec read by torch_ref.TorchModel (torch
operators and autograd) gives the same loss, outputs and gradients as nnc's generated
module, in float64 at rtol 1e-10, for every bundled spec and for random specs.

The absolute floor 1e-12 * max(1, largest gradient entry) covers entries that are zero
up to rounding (a softmax summed over its own axis has gradient exactly 0, computed as
±1e-17 by either side); every other entry is held to the relative tolerance.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from specgen import generate

from helpers import SPEC_PATHS
from nnc.api import compile_spec, load_module
from nnc.runtime.gradcheck import bind_dims, draw_point

torch = pytest.importorskip("torch", reason="PyTorch is a test dependency: python -m pip install torch==2.13.0")
from torch_ref import TorchModel  # noqa: E402  (needs torch: after the importorskip)

RTOL = 1e-10


def _compare(text: str, path: str, seed: int = 0) -> None:
    module = load_module(compile_spec(text, path))
    params, inputs = draw_point(module, bind_dims(module.INPUTS, None), np.random.default_rng(seed))
    loss, grads = module.value_and_grad(params, *inputs)

    values = {name: torch.tensor(p, requires_grad=True) for name, p in params.items()}
    for name, x in zip(module.INPUTS, inputs):
        values[name] = torch.tensor(x, requires_grad=name in module.WRT)
    wrt = [*module.PARAMS, *module.WRT]
    t_loss, env = TorchModel(text, path).run(values)
    if t_loss.requires_grad:
        t_grads = torch.autograd.grad(t_loss, [values[n] for n in wrt], allow_unused=True)
    else:  # the loss depends on data only: every gradient is zero
        t_grads = [None] * len(wrt)

    np.testing.assert_allclose(float(loss), t_loss.item(), rtol=RTOL, atol=1e-300)
    needed = inspect.signature(module.forward).parameters  # params, then the inputs it reads
    outputs = module.forward(params, *(x for n, x in zip(module.INPUTS, inputs) if n in needed))
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    for name, out in zip(module.OUTPUTS, outputs):
        np.testing.assert_allclose(out, env[name].detach().numpy(), rtol=RTOL, atol=1e-12, err_msg=name)
    expected = {n: np.zeros(np.shape(values[n])) if g is None else g.numpy() for n, g in zip(wrt, t_grads)}
    floor = 1e-12 * max([1.0] + [float(np.max(np.abs(g), initial=0.0)) for g in expected.values()])
    for name in wrt:
        np.testing.assert_allclose(np.asarray(grads[name]), expected[name], rtol=RTOL, atol=floor,
                                   err_msg=f"gradient of {name}")


@pytest.mark.parametrize("path", SPEC_PATHS, ids=[p.stem for p in SPEC_PATHS])
def test_bundled_specs_match_torch(path):
    for seed in range(3):
        _compare(path.read_text(), str(path), seed)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_specs_match_torch(data):
    text = generate(lambda options: data.draw(st.sampled_from(list(options))), data.draw(st.integers(1, 6)),
                    batch=data.draw(st.booleans()))
    _compare(text, "random.nn")
