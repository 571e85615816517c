"""An independent reading of a spec in PyTorch: walks the syntax tree with torch functions.

It shares only the parser with nnc; lowering, derivative rules and code generation are
replaced by torch's own operators and autograd, so agreement is evidence for both the
forward semantics and the generated gradients. Losses use torch.nn.functional where it
has them (cross_entropy, binary_cross_entropy_with_logits, mse_loss, multi_margin_loss).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nnc.syntax import ast
from nnc.syntax.parser import parse_spec


def _t(v):
    return v if isinstance(v, torch.Tensor) else torch.tensor(float(v), dtype=torch.float64)


def _hinge(scores, labels, margin=1.0):
    # multi_margin_loss divides each sample's sum by the number of classes; nnc's hinge does not
    rows, classes = scores.shape
    return F.multi_margin_loss(scores, labels, margin=margin, reduction="sum") * classes / rows


def _bce(z, t):
    z, t = torch.broadcast_tensors(_t(z), _t(t))
    return F.binary_cross_entropy_with_logits(z, t)


def _mse(p, t):
    p, t = torch.broadcast_tensors(_t(p), _t(t))
    return F.mse_loss(p, t)


def _reduce(fn):
    def run(x, axis=None):
        return fn(x) if axis is None else fn(x, dim=int(axis))

    return run


FUNCTIONS = {
    "identity": lambda x: x,
    "step": lambda x: (x >= 0).to(x.dtype),
    "sign": lambda x: torch.where(x >= 0, 1.0, -1.0).to(x.dtype),
    "sigmoid": torch.sigmoid, "tanh": torch.tanh, "arctan": torch.atan, "relu": torch.relu,
    "leaky_relu": lambda x, alpha=0.01: F.leaky_relu(x, alpha),
    "elu": lambda x, alpha=1.0: F.elu(x, alpha),
    "softplus": F.softplus, "silu": F.silu, "gelu": lambda x: F.gelu(x, approximate="tanh"),
    "softmax": lambda x, axis=-1: torch.softmax(x, dim=int(axis)),
    "log_softmax": lambda x, axis=-1: torch.log_softmax(x, dim=int(axis)),
    "exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt, "abs": torch.abs, "sin": torch.sin,
    "cos": torch.cos,
    "maximum": lambda a, b: torch.maximum(_t(a), _t(b)),
    "minimum": lambda a, b: torch.minimum(_t(a), _t(b)),
    "sum": _reduce(torch.sum), "mean": _reduce(torch.mean),
    "transpose": lambda x: x.transpose(-1, -2), "flatten": lambda x: x.reshape(x.shape[0], -1),
    "mse": _mse, "sse": lambda p, t: 0.5 * torch.sum((_t(t) - _t(p)) ** 2),
    "cross_entropy": lambda logits, labels: F.cross_entropy(logits, labels),
    "bce": _bce, "hinge": _hinge, "l2": lambda x: torch.sum(x ** 2),
}
_BINOPS = {"+": torch.add, "-": torch.sub, "*": torch.mul, "/": torch.div, "@": torch.matmul,
           "^": torch.pow}


class TorchModel:
    """Evaluates a spec's loss and definitions from torch tensors keyed by spec names."""

    def __init__(self, text: str, path: str = "spec.nn"):
        self.spec = parse_spec(text, path)

    def run(self, values: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        env = dict(values)
        loss = None
        for st in self.spec.statements:
            if isinstance(st, ast.DefineStmt):
                env[st.name] = self._expr(st.expr, env, st.name)
            elif isinstance(st, ast.LossStmt):
                loss = self._expr(st.expr, env, "loss")
        return loss, env

    def _expr(self, e, env, owner):
        if isinstance(e, ast.Num):
            return float(e.value)
        if isinstance(e, ast.Name):
            return {"true": True, "false": False}.get(e.id) if e.id in ("true", "false") else env[e.id]
        if isinstance(e, ast.Neg):
            return -self._expr(e.operand, env, owner)
        if isinstance(e, ast.BinOp):
            a, b = self._expr(e.left, env, owner), self._expr(e.right, env, owner)
            if not isinstance(a, torch.Tensor) and not isinstance(b, torch.Tensor):
                return {"+": a + b, "-": a - b, "*": a * b, "/": a / b, "^": a ** b}[e.op]
            return _BINOPS[e.op](_t(a), b)
        assert isinstance(e, ast.Call), e
        kwargs = {k.name: self._kwarg(k.value) for k in e.kwargs}
        if e.func == "dense":  # dense(x, units, bias, init): the initializer is no value
            x = self._expr(e.args[0], env, owner)
            bias = self._expr(e.args[2], env, owner) if len(e.args) > 2 else kwargs.get("bias", True)
            h = x @ env[f"{owner}.W"]
            return h + env[f"{owner}.b"] if bias else h
        args = [self._expr(a, env, owner) for a in e.args]
        if not any(isinstance(a, torch.Tensor) for a in args):  # a builtin of numbers: log(2)
            args = [_t(a) for a in args[:1]] + args[1:]
        if e.func == "prelu":
            alpha = env[f"{owner}.alpha"]
            return torch.where(args[0] >= 0, args[0], alpha * args[0])
        return FUNCTIONS[e.func](*args, **kwargs)

    @staticmethod
    def _kwarg(e):
        if isinstance(e, ast.Name):
            return {"true": True, "false": False}.get(e.id, e.id)
        if isinstance(e, ast.Neg):
            return -e.operand.value
        if isinstance(e, ast.Call):  # an initializer, init=normal(0.1)
            return e
        return e.value
