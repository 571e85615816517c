"""The training loop behind `nnc train`, `nnc eval` and `nnc predict`.

It compiles the spec (with command-line overrides of the optimizer), imports the
generated module, and drives its init_params / train_step / loss / forward; the
optimizer arithmetic itself is the generated code.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import inspect
import json
import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TextIO

import numpy as np

from .. import optim
from ..codegen import render_module
from ..ir.core import Program
from . import data as datamod
from .progress import EpochRecord, Progress, Summary, plot_curves
from .weights import _to_numpy, load_weights, save_weights


class TrainError(ValueError):
    """A problem with the arguments of a run, reported without a traceback."""


def require_examples(bound, source: str) -> int:
    """The number of examples in `bound`, data read from `source`: a TrainError when there are none."""
    if len(bound) == 0:
        raise TrainError(f"{source} holds no examples")
    return len(bound)


# ---- the model: spec facts, optimizer overrides, the generated module ---------------------------


def input_specs(prog: Program) -> list[datamod.InputSpec]:
    return [datamod.InputSpec(d.var.name, d.var.dtype, tuple(d.var.shape), d.classes) for d in prog.inputs]


def output_kind(prog: Program) -> str:
    """What the first output produces: "probability" (sigmoid, step, softmax: classes by 0.5 or
    argmax), "signed" (sign, tanh: -1/+1), "logit" (fed to bce: classes by 0) or "score"."""
    if not prog.outputs:
        return "score"
    out = prog.outputs[0]
    defs = {e.out.name: e for e in prog.eqns}
    prim = defs[out.name].prim if out.name in defs else None
    if prim in ("sigmoid", "step", "softmax"):
        return "probability"
    if prim in ("sign", "tanh"):
        return "signed"
    if any(e.prim == "softplus" and out in e.inputs for e in prog.eqns):
        return "logit"
    return "score"


def parse_schedule(text: str) -> dict:
    """`cosine`, `step:step_size=100,gamma=0.5`, `exponential:gamma=0.99` -> settings."""
    name, _, rest = text.partition(":")
    name = name.strip()
    if name not in optim.SCHEDULES:
        raise TrainError(f"--schedule: unknown schedule '{name}' (choose from {', '.join(optim.SCHEDULES)})")
    out: dict = {"schedule": name}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in optim.SCHEDULE_SETTINGS:
            raise TrainError(f"--schedule: expected KEY=VALUE with KEY one of "
                             f"{', '.join(optim.SCHEDULE_SETTINGS)}; got '{item}'")
        if key in out:  # as a setting given twice in the spec is an error
            raise TrainError(f"--schedule: '{key}' given twice")
        try:
            number = float(value)
        except ValueError:
            raise TrainError(f"--schedule: '{value.strip()}' is not a number") from None
        if key in optim.INTEGER_SETTINGS and not number.is_integer():
            raise TrainError(f"--schedule: '{key}' must be an integer, got {value.strip()}")
        out[key] = int(number) if key in optim.INTEGER_SETTINGS else number
    return out


def configure(prog: Program, *, lr: float | None = None, schedule: dict | None = None,
              clip_norm: float | None = None, total_steps: int | None = None) -> Program:
    """The program with optimizer settings overridden from the command line, checked."""
    name, hyper = prog.optimizer
    hp = dict(hyper)
    changes: dict = {}
    if lr is not None:
        changes["lr"] = lr
    if schedule:
        # the spec's settings of another schedule do not carry over (gamma into cosine)
        defaults = dict(optim.COMMON)
        changes.update({k: defaults[k] for k in optim.SCHEDULE_SETTINGS
                        if k not in optim.SCHEDULE_SETTINGS_USED[schedule["schedule"]]})
        changes.update(schedule)
    if clip_norm is not None:
        changes["clip_norm"] = clip_norm
    hp.update(changes)
    if hp["schedule"] == "cosine" and hp["total_steps"] is None and total_steps:
        hp["total_steps"] = total_steps  # decay over the whole run
    for key, value in changes.items():
        problem = optim.check_value(key, value) if value is not None else None
        if problem:
            raise TrainError(problem)
    problem = optim.check_settings(hp)
    if problem:
        raise TrainError(f"{name}(): {problem}")
    return prog.with_(optimizer=(name, tuple(hp.items())))


class _TextLoader(importlib.abc.SourceLoader):
    """Imports generated module text from memory; tracebacks still show its lines."""

    def __init__(self, source: str, filename: str):
        self.source, self.filename = source, filename

    def get_filename(self, fullname: str) -> str:
        return self.filename

    def get_data(self, path: str) -> bytes:
        return self.source.encode("utf-8")


def load_module(source: str, name: str) -> ModuleType:
    """Import generated module text as a fresh module."""
    mod_name = f"nnc_generated_{re.sub(r'[^0-9A-Za-z_]', '_', name)}"
    loader = _TextLoader(source, f"<nnc {name}>")
    spec = importlib.util.spec_from_loader(mod_name, loader, origin=loader.filename)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses and pickling look modules up by name
    loader.exec_module(module)
    return module


# Libraries whose array-API namespace is a submodule, by the name users type
_SUBMODULES = {"jax": "jax.numpy", "dask": "dask.array"}


def namespace(backend: str, dtype: str | None = None) -> ModuleType:
    """The array namespace for --backend: numpy, cupy, torch, jax, or any array-API module by name.

    JAX computes in float32 unless its x64 mode is on, truncating float64 with a warning;
    asking for float64 here turns the mode on (nnc's commands own their process)."""
    if backend == "numpy":
        return np
    xp = _namespace(backend)
    if dtype == "float64" and getattr(xp, "__name__", "").startswith("jax"):
        import jax

        jax.config.update("jax_enable_x64", True)
    try:  # a library that imports but cannot run here (CuPy without a usable CUDA driver) says so now
        xp.asarray([0.0])
    except Exception as exc:
        raise TrainError(f"--backend {backend}: cannot make an array with it here "
                         f"({type(exc).__name__}: {str(exc).strip() or 'no message'})") from None
    return xp


def _namespace(backend: str) -> ModuleType:
    backend = _SUBMODULES.get(backend, backend)
    try:
        importlib.import_module(backend)
    except ImportError as exc:
        raise TrainError(f"--backend {backend}: cannot import it ({exc})") from None
    try:  # libraries that are not array-API namespaces themselves go through array_api_compat
        return importlib.import_module(f"array_api_compat.{backend}")
    except ImportError:
        pass
    xp = importlib.import_module(backend)
    missing = [f for f in ("asarray", "take", "float32", "int64") if not hasattr(xp, f)]
    if missing:
        raise TrainError(f"--backend {backend}: not an array-API namespace (it has no {missing[0]})")
    return xp


# ---- batches and evaluation --------------------------------------------------------------------

@dataclass
class Device:
    """A bound data set moved to the array namespace once; batches are taken there."""

    xp: ModuleType
    arrays: dict  # input name -> device array
    host: datamod.Bound

    @classmethod
    def put(cls, xp: ModuleType, bound: datamod.Bound, kinds: dict[str, str], dtype: str) -> Device:
        if dtype == "float32":  # finite in float64 (the data's check), inf once cast: refused, as inf is
            limit = float(np.finfo(np.float32).max)
            for name, a in bound.arrays.items():
                largest = float(np.max(np.abs(a))) if kinds[name] == "float" and a.size else 0.0
                if largest > limit:  # (the examples are a split's here: no index would name a row of the file)
                    raise datamod.DataError(f"input '{name}' holds values beyond float32's range (±3.4e38; the "
                                            f"largest is {largest:.3g}): pass --dtype float64, or rescale the data")
        # labels keep their host dtype (int64) where the namespace has it; JAX without x64
        # makes them int32 quietly, where asking for int64 would warn
        arrays = {name: xp.asarray(a, dtype=getattr(xp, dtype)) if kinds[name] == "float" else xp.asarray(a)
                  for name, a in bound.arrays.items()}
        return cls(xp, arrays, bound)

    def __len__(self) -> int:
        return len(self.host)

    def batch(self, index: np.ndarray) -> dict:
        if self.host.mode == "single":  # `a[i, ...]`: the standard leaves `a[i]` of 2-D arrays open
            return {name: a[int(index[0]), ...] for name, a in self.arrays.items()}
        idx = self.xp.asarray(index)
        return {name: self.xp.take(a, idx, axis=0) for name, a in self.arrays.items()}


def _batches(n: int, size: int, mode: str) -> list[tuple[int, int]]:
    if mode == "single":
        return [(i, i + 1) for i in range(n)]
    if mode == "fixed":
        return [(i, i + size) for i in range(0, n - size + 1, size)]
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def forward_inputs(module: ModuleType) -> list[str]:
    """The inputs the generated forward() takes (those the outputs need)."""
    return list(inspect.signature(module.forward).parameters)[1:]


def _call(fn: Callable[..., Any], params: dict, batch: dict) -> Any:
    names = list(inspect.signature(fn).parameters)[1:]
    return fn(params, *(batch[n] for n in names))


def predict_classes(outputs: np.ndarray, kind: str, mode: str, positions: int = 0) -> np.ndarray:
    """The class each example is given: argmax over several columns, else a threshold. With
    `positions` label axes per example (int[B, T] labels: 1), a class per position: the argmax
    over the last axis of scores [n, T, C]."""
    if positions:
        classes = np.argmax(outputs, axis=-1)
        return classes[None] if mode == "single" else classes
    out = outputs.reshape(outputs.shape[0], -1) if mode != "single" else outputs.reshape(1, -1)
    if out.shape[1] > 1:
        return np.argmax(out, axis=1)
    threshold = 0.5 if kind in ("probability", "score") else 0.0
    return (out[:, 0] >= threshold).astype(np.int64) if kind != "score" else (out[:, 0] > threshold).astype(np.int64)


@dataclass
class Evaluation:
    loss: float
    accuracy: float | None
    predictions: np.ndarray | None  # first output, host copy, examples on the first axis
    classes: np.ndarray | None  # predicted class per example (classifiers)


def fixed_batch(module: ModuleType) -> int:
    """The batch size of a spec whose first axis has a fixed size (Bound.mode "fixed")."""
    return int(next(iter(module.INPUTS.values()))["shape"][0])


def _spans(module: ModuleType, dev: Device, chunk: int) -> list[tuple[int, int]]:
    """Evaluation batches; a spec with a fixed batch size gets that size (a remainder is left
    out, and fewer examples than one batch are an error: no batch at all gave a loss of nan,
    and predict a traceback)."""
    if dev.host.mode == "fixed":
        chunk = fixed_batch(module)
        if 0 < len(dev) < chunk:
            raise TrainError(f"the spec's batch size is {chunk}, but there are only {len(dev)} examples")
    return _batches(len(dev), chunk, dev.host.mode)


def _first_output(module: ModuleType, params: dict, batch: dict, n: int, mode: str) -> np.ndarray | None:
    """The first output for the `n` examples of `batch`, or None when the spec has no output or
    its first output is not one value per example (a parameter, a batch mean)."""
    if not module.OUTPUTS or module.OUTPUTS[0] in module.PARAMS:
        return None
    out = _call(module.forward, params, batch)
    out = _to_numpy(out[0] if isinstance(out, tuple) else out)
    return out if mode == "single" or out.shape[:1] == (n,) else None


def _no_predictions(module: ModuleType) -> TrainError:
    if not module.OUTPUTS:
        return TrainError(f"model {module.MODEL} has no output to predict (add an `output` line to the spec)")
    return TrainError(f"the first output of model {module.MODEL}, {module.OUTPUTS[0]}, is not one value per "
                      "example; predictions are taken from the first output")


def evaluate_outputs(module: ModuleType, params: dict, dev: Device, chunk: int = 4096) -> np.ndarray:
    """The first output for every example of `dev` (a host array, examples on the first axis)."""
    outs = [_first_output(module, params, dev.batch(np.arange(lo, hi)), hi - lo, dev.host.mode)
            for lo, hi in _spans(module, dev, chunk)]
    if any(o is None for o in outs):
        raise _no_predictions(module)
    if not outs:
        return np.zeros((0,))
    return np.stack(outs) if dev.host.mode == "single" else np.concatenate(outs)


def evaluate(module: ModuleType, params: dict, dev: Device, kind: str, chunk: int = 4096) -> Evaluation:
    """The spec's loss (averaged over chunks, weighted by size), the outputs and the accuracy
    (None, like the outputs, when the first output is not one value per example)."""
    total, count, outs = 0.0, 0, []
    for lo, hi in _spans(module, dev, chunk):
        batch = dev.batch(np.arange(lo, hi))
        total += float(_call(module.loss, params, batch)) * (hi - lo)
        count += hi - lo
        outs.append(_first_output(module, params, batch, hi - lo, dev.host.mode))
    if not outs:
        return Evaluation(math.nan, None, np.zeros((0,)), None)
    if any(o is None for o in outs):
        return Evaluation(total / count, None, None, None)
    mode = dev.host.mode
    outputs = np.stack(outs) if mode == "single" else np.concatenate(outs)
    classes = accuracy = None
    labels = dev.host.labels
    if labels is not None:
        classes = np.concatenate([predict_classes(o, kind, mode, labels.ndim - 1) for o in outs])
        if classes.shape != labels[:count].shape:  # the first output is not the labels' scores
            return Evaluation(total / count, None, outputs, None)
        accuracy = float(np.mean(classes == labels[:count]))
    return Evaluation(total / count, accuracy, outputs, classes)


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    m = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(m, (truth, predicted), 1)
    return m


# ---- training ------------------------------------------------------------------------------------

@dataclass
class Options:
    epochs: int | None = None
    batch_size: int = 32
    seed: int = 0
    val_split: float | None = None
    lr: float | None = None
    schedule: str | None = None
    clip_norm: float | None = None
    backend: str = "numpy"
    dtype: str = "float32"
    init_from: str | None = None
    quiet: bool = False
    log: str | None = None
    interruptible: bool = False  # Ctrl-C stops training as a nan loss does (nnc train), not raising


@dataclass
class Run:
    module: ModuleType
    params: dict
    history: list[EpochRecord] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    stopped: str | None = None  # why training stopped early (a non-finite loss)
    interrupted: str | None = None  # where Ctrl-C stopped it (Options.interruptible)
    summary: Summary | None = None


def default_epochs(steps_per_epoch: int) -> int:
    """Enough epochs for about 1,000 optimizer steps, and at least 10."""
    return max(10, math.ceil(1000 / max(1, steps_per_epoch)))


def default_val_split(n: int) -> float:
    """Hold out 20% of data sets of 100 examples or more; tiny ones (xor) train on everything."""
    return 0.2 if n >= 100 else 0.0


def _copy(xp: ModuleType, params: dict) -> dict:
    return {k: xp.asarray(v, copy=True) for k, v in params.items()}


def _finite(params: dict) -> bool:
    return all(bool(np.all(np.isfinite(_to_numpy(v)))) for v in params.values())


def train(prog: Program, spec_name: str, data_source: str, opts: Options, stream: TextIO | None = None) -> Run:
    """Train the model of `prog` on `data_source`; returns the trained run (also on a nan stop)."""
    inputs = input_specs(prog)
    kind = output_kind(prog)
    try:
        bound = datamod.bind(datamod.load(data_source, inputs), inputs, kind)
    except datamod.DataError as exc:
        raise TrainError(str(exc)) from None
    for note in (datamod.unused_note("train", bound, data_source, inputs),
                 datamod.target_range_note("train", bound, inputs, kind)):
        if note:
            print(note, file=sys.stderr)
    n = require_examples(bound, data_source)
    val_split = default_val_split(n) if opts.val_split is None else opts.val_split
    try:
        train_idx, val_idx = datamod.split(n, val_split, opts.seed)
    except datamod.DataError as exc:
        raise TrainError(str(exc)) from None
    train_set, val_set = bound.take(train_idx), bound.take(val_idx)
    batch_size = opts.batch_size
    if bound.mode == "fixed":
        batch_size = int(inputs[0].shape[0])
        if len(train_set) < batch_size:
            raise TrainError(f"the spec's batch size is {batch_size}, but there are only {len(train_set)} "
                             "training examples")
        if 0 < len(val_set) < batch_size:  # evaluation runs in batches of that size too
            least = math.ceil((batch_size - 0.5) / n * 1000) / 1000
            raise TrainError(f"the spec's batch size is {batch_size}, but the validation split holds only "
                             f"{len(val_set)} of the {n} examples (--val-split {val_split:g}): pass "
                             f"--val-split {least:g} or more, or --val-split 0 to train on every example")
    spans = _batches(len(train_set), batch_size, bound.mode)
    epochs = opts.epochs or default_epochs(len(spans))
    schedule = parse_schedule(opts.schedule) if opts.schedule is not None else None  # "" is an error
    prog = configure(prog, lr=opts.lr, schedule=schedule, clip_norm=opts.clip_norm,
                     total_steps=epochs * len(spans))
    module = load_module(render_module(prog), prog.name)
    xp = namespace(opts.backend, opts.dtype)
    if opts.init_from:
        try:
            loaded = load_weights(opts.init_from, dict(module.PARAMS))
        except ValueError as exc:
            raise TrainError(str(exc)) from None
        params = {k: xp.asarray(v, dtype=getattr(xp, opts.dtype)) for k, v in loaded.items()}
    else:
        params = module.init_params(opts.seed, xp=xp, dtype=opts.dtype)
    kinds = {i.name: i.kind for i in inputs}
    train_dev = Device.put(xp, train_set, kinds, opts.dtype)
    val_dev = Device.put(xp, val_set, kinds, opts.dtype) if len(val_set) else None
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # divergence is reported once, as the nan stop
        run = _loop(module, params, train_dev, val_dev, spans, epochs, kind, opts, stream)
    classifier = bound.labels is not None
    run.summary = Summary(spec_name, data_source, len(train_set), len(val_set), len(run.history), run.steps,
                          run.seconds, run.history[-1] if run.history else None, classifier)
    return run


def _step_function(module: ModuleType, xp: ModuleType):
    """module.train_step; on Dask, persisting what it makes (`_persisting`); on JAX, the same
    function compiled by jax.jit (eager JAX dispatches every operation). train_step writes
    into the dicts it is given, which a trace cannot see, so the compiled function gets
    copies and returns them. A step that cannot be traced (host arithmetic on a traced value;
    none of nnc's optimizers and schedules does it) then runs eagerly."""
    if is_dask(xp):
        return _persisting(module.train_step)
    if getattr(xp, "__name__", None) != "jax.numpy":
        return module.train_step
    import jax

    def functional(params: dict, state: dict, *inputs):
        params = dict(params)
        state = {k: dict(v) if isinstance(v, dict) else v for k, v in state.items()}
        loss = module.train_step(params, state, *inputs)
        return params, state, loss

    compiled = jax.jit(functional)
    traceable = True

    def train_step(params: dict, state: dict, *inputs):
        nonlocal traceable
        if traceable:
            try:
                new_params, new_state, loss = compiled(params, state, *inputs)
            except jax.errors.JAXTypeError:  # host arithmetic on a traced value; nothing was written
                traceable = False
            else:
                params.update(new_params)
                state.update(new_state)
                state["step"] = int(new_state["step"])  # a plain count, as eager train_step keeps it
                return loss
        return module.train_step(params, state, *inputs)

    return train_step


def is_dask(xp: ModuleType) -> bool:
    """Whether `xp` is Dask's array namespace (dask.array, or array_api_compat's for it):
    lazy, so nnc train and nnc bench persist what each step makes (`persist`)."""
    return getattr(xp, "__name__", "").endswith("dask.array")


def persist(params: dict, state: dict, *also: Any) -> tuple:
    """Compute Dask parameters, optimizer state and `also` now, keeping them Dask arrays (in
    the same dicts: the buffers' dicts stay the caller's); returns `also` persisted."""
    import dask

    new_params, new_state, *also = dask.persist(params, state, *also)
    params.update(new_params)
    for key, value in new_state.items():
        if isinstance(value, dict):
            state[key].update(value)
        else:
            state[key] = value
    return tuple(also)


def _persisting(train_step: Callable[..., Any]) -> Callable[..., Any]:
    """train_step on Dask, with the new parameters, state and loss persisted together: each
    step then computes only itself. Left lazy, the graph grows a step at a time, and each
    float(loss) recomputes every step from the first (200 epochs of xor took over 300 s)."""

    def step(params: dict, state: dict, *inputs):
        [loss] = persist(params, state, train_step(params, state, *inputs))
        return loss

    return step


def _loop(module: ModuleType, params: dict, train_dev: Device, val_dev: Device | None, spans: list[tuple[int, int]],
          epochs: int, kind: str, opts: Options, stream: TextIO | None) -> Run:
    xp = train_dev.xp
    state = module.init_optimizer(params)
    train_step = _step_function(module, xp)
    rng = np.random.default_rng([opts.seed, 2])  # shuffling: its own stream, fixed by --seed
    run = Run(module, params)
    progress = Progress(epochs, len(spans), quiet=opts.quiet, stream=stream)
    try:
        log = open(opts.log, "w", encoding="utf-8") if opts.log else None  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise TrainError(f"--log {opts.log}: cannot write it: {exc.strerror or exc}") from None
    classifier = train_dev.host.labels is not None
    start = time.perf_counter()
    # train_step returns the loss of the parameters it is given: `before` are this step's,
    # `finite` the last ones whose loss was finite (before the step before, once one ran)
    epoch, in_step, before, finite, train_eval = 0, False, None, None, None
    try:
        for epoch in range(1, epochs + 1):
            order = rng.permutation(len(train_dev))
            total, seen = 0.0, 0
            for k, (lo, hi) in enumerate(spans, 1):
                before = _copy(xp, params)
                in_step = True
                loss = float(train_step(params, state, *_ordered(module, train_dev.batch(order[lo:hi]))))
                in_step = False
                if not math.isfinite(loss):
                    params.clear()
                    params.update(finite if finite is not None else before)
                    kept = ("the weights before the step before it, the last whose loss was finite"
                            if finite is not None else "the initial weights, whose loss it is")
                    run.stopped = (f"loss became {loss} at epoch {epoch} step {run.steps + 1} (batch {k} of "
                                   f"{len(spans)}); kept {kept}; try a smaller --lr")
                    progress.message(f"nnc train: {run.stopped}")
                    break
                finite = before
                run.steps += 1
                total += loss * (hi - lo)
                seen += hi - lo
                progress.step(epoch, k, total / seen)
            if run.stopped:
                break
            train_eval = evaluate(module, params, train_dev, kind) if classifier else None
            record = _record(module, params, train_eval, val_dev, kind, epoch, run.steps, total / max(seen, 1),
                             state, time.perf_counter() - start)
            run.history.append(record)
            progress.epoch(record, classifier)
            if log:
                log.write(json.dumps(record.as_dict(), allow_nan=False) + "\n")
                log.flush()
        # no next step's loss tells of the last one: its parameters, and their loss, are checked
        # here (a classifier's last record evaluated the training set with them already)
        if not run.stopped and run.steps and not (_finite(params) and math.isfinite(
                (train_eval if train_eval is not None else evaluate(module, params, train_dev, kind)).loss)):
            params.clear()
            params.update(before)
            run.stopped = (f"the last step (epoch {epoch} step {run.steps}) made the loss or the parameters "
                           "non-finite; kept the weights from before it, whose loss was finite; try a smaller --lr")
            progress.message(f"nnc train: {run.stopped}")
            if run.history:  # the summary reports the weights kept
                train_eval = evaluate(module, params, train_dev, kind) if classifier else None
                run.history[-1] = _record(module, params, train_eval, val_dev, kind, epoch, run.steps,
                                          run.history[-1].loss, state, time.perf_counter() - start)
    except KeyboardInterrupt:
        if not opts.interruptible:
            raise
        if in_step:  # a step cut short may have written some parameters and not others
            params.clear()
            params.update(before)
        run.interrupted = (f"interrupted (Ctrl-C) at epoch {epoch} of {epochs} after {run.steps} "
                           f"step{'s' if run.steps != 1 else ''}")
        progress.message(f"nnc train: {run.interrupted}")
    finally:
        run.seconds = time.perf_counter() - start
        progress.close()
        if log:
            log.close()
    return run


def _ordered(module: ModuleType, batch: dict) -> list:
    return [batch[name] for name in module.INPUTS]


def _record(module: ModuleType, params: dict, train_eval: Evaluation | None, val_dev: Device | None, kind: str,
            epoch: int, steps: int, loss: float, state: dict, seconds: float) -> EpochRecord:
    """The epoch's record; `train_eval` is the training set's evaluation, for classifiers."""
    acc = train_eval.accuracy if train_eval is not None else None
    val = evaluate(module, params, val_dev, kind) if val_dev is not None else None
    return EpochRecord(epoch, steps, loss, acc, val.loss if val else None, val.accuracy if val else None,
                       current_lr(module, state), seconds)


def current_lr(module: ModuleType, state: dict) -> float:
    """The learning rate of the last step, from the module's OPTIMIZER settings and the schedule."""
    return optim.lr_at(module.OPTIMIZER[1], max(1, state["step"]))


def save(run: Run, path: str, spec_name: str) -> None:
    try:
        save_weights(run.params, path, dict(run.module.PARAMS), {"model": run.module.MODEL, "spec": spec_name})
    except (OSError, ValueError) as exc:
        raise TrainError(f"cannot save weights to {path}: {exc}") from None


def plot(run: Run, path: str, title: str) -> None:
    plot_curves(run.history, path, title)
