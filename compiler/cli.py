"""The command line: a thin click shell over the library API."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import NoReturn

import click

from . import __version__
from .diff import SECTIONS
from .errors import NncError, Span, SpecError, SpecErrors, render_errors
from .runtime.files import write_atomically


class _Finite(click.FloatRange):
    """A FloatRange that also refuses nan and inf: every comparison with nan is false, so a
    plain range lets it through (and `--lr nan` used to reach the generated code)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report a command killed by SIGINT (128 + 2)


MAX_SPEC_BYTES = 16 * 2**20  # far beyond the parser's token limit; bounds memory before parsing


def _read_spec(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise click.UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(f"the spec is too large (more than {MAX_SPEC_BYTES // 2**20} MiB)", Span.point(1, 1),
                        help="nnc compiles specs of up to about 5,000 lines")
    try:
        return data.decode("utf-8-sig")  # a leading byte-order mark is not part of the spec
    except UnicodeDecodeError as exc:
        raise _not_utf8(data, exc) from None


def _not_utf8(data: bytes, exc: UnicodeDecodeError) -> SpecError:
    """A located error for the first byte that is not UTF-8."""
    start = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
    line_start = data.rfind(b"\n", 0, start) + 1
    line = data.count(b"\n", 0, start) + 1
    col = len(data[line_start:start].decode("utf-8", errors="replace")) + 1
    return SpecError(f"the spec is not valid UTF-8 text (byte 0x{data[start]:02X})", Span.point(line, col),
                     help="save the file as UTF-8; is it a binary file?")


def _display_source(path: str) -> str:
    """The spec's text for showing source lines in diagnostics, whatever its bytes."""
    try:
        with open(path, "rb") as f:
            return f.read(MAX_SPEC_BYTES).decode("utf-8-sig", errors="replace")
    except OSError:
        return ""


def _fail_spec(exc: SpecError | SpecErrors, source: str, path: str) -> NoReturn:
    click.echo(render_errors(exc, source or _display_source(path), path), err=True)
    sys.exit(EXIT_BAD_INPUT)


def _run(fn, path: str, debug: bool):
    """Run a compile step, turning spec errors into located diagnostics (exit 2).

    Anything else escaping is a bug in nnc: it is reported in one line (exit 3), with
    the traceback only under --debug.
    """
    source = ""
    try:
        source = _read_spec(path)
        return source, fn(source, path)
    except (SpecError, SpecErrors) as exc:
        if debug:
            raise
        _fail_spec(exc, source, path)
    except click.ClickException:
        raise
    except RecursionError:
        if debug:
            raise
        click.echo(f"{path}: error: the spec is nested too deeply to compile", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except NncError as exc:
        if debug:
            raise
        click.echo(f"{path}: error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except Exception as exc:
        if debug:
            raise
        _fail_internal(path, f"{type(exc).__name__}: {exc}")


def _fail_internal(path: str, what: str) -> NoReturn:
    """A bug in nnc: one line and exit 3 (the traceback only under --debug, raised by the caller)."""
    click.echo(f"{path}: internal error: {what}\n"
               "note: this is a bug in nnc; rerun with --debug for a traceback and report it", err=True)
    sys.exit(EXIT_INTERNAL)


class _StdoutFailed(BaseException):
    """A write to standard output failed (a full disk, a closed stream; args[0] None: a broken
    pipe, whose reader left early). A BaseException, as KeyboardInterrupt is, so that no
    command's `except Exception` reports it as nnc's bug."""


class _CheckedStdout:
    """sys.stdout while a command runs: a failed write or flush raises _StdoutFailed, which
    _Group.main reports in one line; a broken pipe (`nnc train spec.nn | head`) is a quiet
    exit 1, as click makes it (and as train, catching OSError, did not)."""

    def __init__(self, stream):
        self._stream = stream

    def _checked(self, method: str, *args):
        try:
            return getattr(self._stream, method)(*args)
        except OSError as exc:
            raise _StdoutFailed(None if exc.errno == errno.EPIPE else exc.strerror or str(exc)) from None

    def write(self, text):
        return self._checked("write", text)

    def flush(self):
        return self._checked("flush")

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


class _ClosedStdout(io.StringIO):
    """Standard output when the process has none (`nnc compile spec.nn >&-`): writing to it
    is an error, where click.echo would print nothing and the command exit 0."""

    def write(self, text):
        if text:
            raise OSError(errno.EBADF, "it is closed")
        return 0


class _Group(click.Group):
    """Ctrl-C anywhere is one line and exit 130, not click's "Aborted!" and exit 1 (which
    reads as a failed check). A failed write to standard output is one line and exit 2."""

    def main(self, *args, **kwargs):
        real = sys.stdout
        checked = sys.stdout = _CheckedStdout(real if real is not None else _ClosedStdout())
        try:
            return super().main(*args, **kwargs)
        except _StdoutFailed as exc:
            with contextlib.suppress(AttributeError, OSError, ValueError):  # no file descriptor (CliRunner)
                os.dup2(os.open(os.devnull, os.O_WRONLY), real.fileno())  # what the exit's flush writes
            if exc.args[0] is None:  # the reader left: nothing to say, and no one to say it to
                sys.exit(EXIT_CHECK_FAILED)
            click.echo(f"nnc: error: cannot write to standard output: {exc}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        finally:
            if sys.stdout is checked:
                sys.stdout = real

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("\nnnc: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nnc")
def main() -> None:
    """nnc: compile neural-network specs into standalone Python modules."""


_debug = click.option("--debug", is_flag=True, help="Show Python tracebacks (for nnc developers).")


@main.command("compile")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False), help="Write the module here (default, or -: stdout).")
@click.option("--section", type=click.Choice(SECTIONS),
              help="Only this part of the module: forward (forward, loss), backward (value_and_grad), "
                   "forward-mode (jvp, hvp), optimizer (init_optimizer, train_step), "
                   "weights (save_params, load_params) or header (the rest).")
@_debug
def compile_cmd(spec: str, out: str | None, section: str | None, debug: bool) -> None:
    """Compile SPEC into a standalone Python module."""
    from .api import compile_spec

    if out is not None and _same_file(out, spec):
        raise click.UsageError(f"-o {out} is the spec itself; writing there would destroy the spec")
    _, text = _run(compile_spec, spec, debug)
    if section is not None:
        from .diff import section_text

        text = section_text(text, section)
    if out is None or out == "-":
        click.echo(text, nl=False)
        return
    try:
        write_atomically(Path(out), text)
    except OSError as exc:
        raise _OutputError(f"cannot write {out}: {exc.strerror or exc}") from None


class _OutputError(click.ClickException):
    exit_code = EXIT_BAD_INPUT  # an unusable -o path is a bad argument


def _same_file(a: str, b: str) -> bool:
    """True when paths `a` and `b` name one file (also through symlinks or hard links)."""
    if Path(a).resolve() == Path(b).resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@main.command("ir")
@click.argument("spec", type=click.Path(dir_okay=False))
@_debug
def ir_cmd(spec: str, debug: bool) -> None:
    """Print the forward and backward IR of SPEC."""
    from .api import build_program
    from .ir.printer import print_program

    _, prog = _run(build_program, spec, debug)
    click.echo(print_program(prog))


@main.command("graph")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False),
              help="graph.svg / .png / .pdf (rendered by Graphviz's dot) or graph.dot (DOT text); "
                   "default: DOT text on stdout.")
@click.option("--backward", is_flag=True, help="Add the backward (adjoint) equations in red.")
@click.option("--values", is_flag=True, help="Label edges with forward values and gradients (needs inputs).")
@click.option("--input", "assigns", multiple=True, metavar="NAME=VALUE",
              help="An input value for --values: a number or a JSON list (repeatable).")
@click.option("--data", type=click.Path(exists=True, dir_okay=False),
              help="Input values for --values from a .npz or .json file (--input overrides its entries).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of init_params for parameters without values.")
@click.option("--digits", default=4, show_default=True, type=click.IntRange(1, 17),
              help="Significant digits of values in labels.")
@_debug
def graph_cmd(spec: str, out: str | None, backward: bool, values: bool, assigns: tuple[str, ...],
              data: str | None, seed: int, digits: int, debug: bool) -> None:
    """Draw the computational graph of SPEC (Graphviz DOT, SVG, PNG or PDF)."""
    from .api import build_program, compile_spec
    from .graph import (
        DOT_SUFFIXES,
        RENDERED,
        GraphvizError,
        GraphvizMissing,
        concrete_inputs,
        graph_values,
        initial_params,
        load_data,
        render,
        to_dot,
    )

    out = None if out == "-" else out  # stdout, as for nnc compile
    if out is not None and Path(out).suffix.lower() not in (*RENDERED, *DOT_SUFFIXES):
        raise click.UsageError(f"-o {out}: the file name must end in .svg, .png, .pdf, .dot or .gv "
                               "(or be -, the DOT text on stdout)")
    _require_folder("graph", "-o", out)
    if (assigns or data) and not values:
        values = True
    _, prog = _run(build_program, spec, debug)
    annotations = None
    if values:
        try:
            given = load_data(Path(data)) if data else None
            inputs = concrete_inputs(prog, list(assigns), given)
        except OSError as exc:
            raise click.UsageError(f"cannot read {data}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        _, source = _run(compile_spec, spec, debug)
        annotations = graph_values(prog, initial_params(source, seed), inputs)
    text = to_dot(prog, backward=backward, values=annotations, digits=digits)
    if out is None:
        click.echo(text, nl=False)
        return
    ticker = _dot_waiting(text, Path(out))
    try:
        render(text, Path(out), ticker)
    except GraphvizMissing as exc:  # this -o asks for what this machine cannot make: a bad argument
        raise _OutputError(str(exc)) from None
    except GraphvizError as exc:  # dot itself failed: exit 1, as a failed check
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise _OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        if ticker is not None:
            ticker.finish()


def _dot_waiting(text: str, out: Path) -> _Ticker | None:
    """For a graph large enough that dot may take minutes: a note on stderr before it starts
    and, on a terminal, the seconds it has taken so far, so that a long layout is not taken
    for a hang. None (no ticker) for small graphs and for DOT text, which needs no layout."""
    from .graph import DOT_SUFFIXES, LARGE_GRAPH, graph_size

    nodes, edges = graph_size(text)
    if out.suffix.lower() in DOT_SUFFIXES or nodes <= LARGE_GRAPH:
        return None
    click.echo(f"note: dot lays out {nodes:,} nodes and {edges:,} edges for {out.name}; a graph this large can "
               f"take it minutes (Ctrl-C stops it; -o {out.with_suffix('.dot')} writes the DOT text at once)",
               err=True)
    stream = click.get_text_stream("stderr")
    if not stream.isatty():
        return None

    return _Ticker(stream)


class _Ticker:
    """`\r  dot: 12 s` on a terminal while dot works; the line is wiped once it is done."""

    def __init__(self, stream):
        self.stream, self.shown = stream, False

    def __call__(self, seconds: float) -> None:
        self.stream.write(f"\r  dot: {seconds:.0f} s")
        self.stream.flush()
        self.shown = True

    def finish(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * 20 + "\r")
            self.stream.flush()


def _parse_dims(dims: tuple[str, ...]) -> dict[str, int]:
    bound = {}
    for text in dims:
        name, sep, value = text.partition("=")
        if not sep or not value.strip().isdigit() or int(value) <= 0:
            raise click.UsageError(f"--dim {text!r}: expected NAME=SIZE with a positive integer size, e.g. B=128")
        if name.strip() in bound:
            raise click.UsageError(f"--dim {name.strip()} is given twice")
        bound[name.strip()] = int(value)
    return bound


@main.command("summary")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--dim", "dims", multiple=True, metavar="NAME=SIZE",
              help="Bind a symbolic dimension (repeatable); unbound ones stay symbolic in the counts.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True,
              help="Float dtype for activation bytes.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for tools instead of the table.")
@_debug
def summary_cmd(spec: str, dims: tuple[str, ...], dtype: str, as_json: bool, debug: bool) -> None:
    """Print a table of SPEC: shapes, parameters, FLOPs and activation memory."""
    import json

    from .summary import format_table, summarize, to_json

    bound = _parse_dims(dims)

    def run(text: str, path: str):
        try:
            return summarize(text, path, bound, dtype)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None

    _, result = _run(run, spec, debug)
    if as_json:
        click.echo(json.dumps(to_json(result), indent=2))
    else:
        click.echo(format_table(result), nl=False)


@main.command("diff")
@click.argument("old", type=click.Path(dir_okay=False))
@click.argument("new", type=click.Path(dir_okay=False))
@click.option("--section", "sections", multiple=True,
              type=click.Choice(SECTIONS),
              help="Only these sections (repeatable).")
@click.option("-U", "--context", default=3, show_default=True, type=click.IntRange(0, 1000),
              help="Lines of context around each change.")
@click.option("--color/--no-color", default=None, help="Colour the diff (default: when writing to a terminal).")
@_debug
def diff_cmd(old: str, new: str, sections: tuple[str, ...], context: int, color: bool | None, debug: bool) -> None:
    """Diff the generated code of OLD and NEW, section by section.

    Each is a spec (.nn, compiled first) or a generated module (.py): a spec against the
    module it was compiled to shows hand edits. Exit status 0: same; 1: different.
    """
    from . import __version__
    from .api import compile_spec
    from .diff import diff_sections, generator_note

    texts, labels = [], []
    for path in (old, new):
        if path.endswith(".nn"):
            texts.append(_run(compile_spec, path, debug)[1])
            labels.append(f"{path} (compiled)")
            continue
        try:
            texts.append(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise click.UsageError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
        labels.append(path)
    diffs = [d for d in diff_sections(texts[0], texts[1], labels[0], labels[1], context)
             if not sections or d.section in sections]
    styles = {"+": {"fg": "green"}, "-": {"fg": "red"}, "@": {"fg": "cyan"}}
    for d in diffs:
        for i, line in enumerate(d.lines):
            style = {"bold": True} if i < 2 else styles.get(line[:1], {})
            click.echo(click.style(line, **style) if style else line, color=color)
    kinds = [p.endswith(".nn") for p in (old, new)]
    if kinds[0] != kinds[1]:
        spec, module = (old, new) if kinds[0] else (new, old)
        if diffs:
            click.echo(f"{module} differs from what {spec} compiles to in: "
                       + ", ".join(d.section for d in diffs) + " (hand edits, or a changed spec)", err=True)
        else:
            click.echo(f"{module} is exactly what {spec} compiles to: no hand edits", err=True)
        note = generator_note(texts[1] if kinds[0] else texts[0], __version__)
        if note and diffs:
            click.echo(f"note: {note}", err=True)
    sys.exit(EXIT_CHECK_FAILED if diffs else EXIT_OK)


# ---- training, evaluation, prediction (runtime/train.py does the work) -------------------------

_DATA_HELP = "An .npz file (arrays named after the spec's inputs), a .csv file, or a built-in set: " \
    "xor, and, or, digits, spirals, moons."


def _fail_run(command: str, message: str) -> None:
    click.echo(f"nnc {command}: error: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


@contextlib.contextmanager
def _run_errors(command: str, spec: str, debug: bool):
    """What train, eval and predict run: a bad argument, data file or weights file is one line
    and exit 2 (TrainError, ValueError); anything else a bug in nnc, or in the namespace named by
    --backend, reported in one line with exit 3 (the traceback under --debug), never a traceback."""
    from .runtime import train as tr

    try:
        yield
    except (tr.TrainError, ValueError) as exc:
        if debug:
            raise
        _fail_run(command, str(exc))
    except Exception as exc:
        if debug:
            raise
        _fail_internal(spec, f"{type(exc).__name__}: {exc}")


def _note_left_out(command: str, module, bound) -> None:
    """Say so when a fixed batch size leaves the last examples out of eval or predict (their
    counts and lines would otherwise silently cover fewer examples than the data holds)."""
    from .runtime import train as tr

    size = tr.fixed_batch(module) if bound.mode == "fixed" else 0
    if size and len(bound) % size:
        click.echo(f"nnc {command}: note: the spec's batch size is {size}: the last {len(bound) % size} "
                   f"of the {len(bound)} examples are left out", err=True)


def _limit_threads(threads: int | None) -> None:
    """Set the BLAS thread count before NumPy loads: with the small matrices of minibatch
    training, extra threads only add synchronisation (and stall when cores are shared)."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if threads is not None:
            os.environ[var] = str(threads)
        else:
            os.environ.setdefault(var, "1")


def _require_folder(command: str, option: str, path: str | None) -> None:
    """An output path whose folder is missing is an error now, not after the run."""
    if path is not None and not Path(path).resolve().parent.is_dir():
        _fail_run(command, f"{option} {path}: no such directory: {Path(path).parent}")


def _refuse_overwrite(command: str, outputs: dict[str, str | None], inputs: dict[str, str | None]) -> None:
    """An output option naming an input file (the spec, the data, the weights) or another output
    would destroy it: an error before any work, as `nnc compile -o SPEC` is."""
    named = [(option, path) for option, path in outputs.items() if path is not None]
    for i, (option, path) in enumerate(named):
        for what, source in inputs.items():
            if source is not None and os.path.exists(source) and _same_file(path, source):
                _fail_run(command, f"{option} {path} is {what} itself; writing there would destroy it")
        for other, source in named[:i]:
            if _same_file(path, source):
                _fail_run(command, f"{other} and {option} name the same file {path}")


def _weights_path(value: str | None, option: str) -> None:
    if value is not None and not value.endswith((".npz", ".safetensors")):
        raise click.BadParameter("weights files end in .npz or .safetensors", param_hint=option)


@main.command("train")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--data", required=True, metavar="FILE|NAME", help=_DATA_HELP)
@click.option("--epochs", type=click.IntRange(min=1), help="Passes over the training data "
              "(default: enough for about 1,000 steps, at least 10).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--lr", type=_Finite(min=0), help="Learning rate (overrides the spec).")
@click.option("--schedule", metavar="NAME[:K=V,...]", help="Learning-rate schedule (overrides the spec): "
              "constant, cosine, step:step_size=N,gamma=G, exponential:gamma=G.")
@click.option("--clip-norm", type=_Finite(min=0, min_open=True),
              help="Clip the gradient to this global norm (overrides the spec).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seeds initialization, shuffling, the split.")
@click.option("--val-split", type=_Finite(0, 1, max_open=True),
              help="Share of examples held out for validation (default: 0.2; 0 below 100 examples).")
@click.option("--out", type=click.Path(dir_okay=False), help="Save the weights: .npz or .safetensors.")
@click.option("--init-from", type=click.Path(dir_okay=False), help="Start from these weights.")
@click.option("--backend", default="numpy", show_default=True, help="numpy, cupy, torch, jax, or an array-API module.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help="BLAS threads (default: 1, or the "
              "OPENBLAS_NUM_THREADS / OMP_NUM_THREADS you set): small batches run fastest on one.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or per-epoch lines.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Draw the training curves to an image (matplotlib).")
@click.option("--log", type=click.Path(dir_okay=False), help="Write one JSON line of metrics per epoch.")
@_debug
def train_cmd(spec: str, data: str, out: str | None, init_from: str | None, plot: str | None,
              threads: int | None, debug: bool, **options) -> None:
    """Train SPEC with the spec's optimizer, then print a summary (exit 1 if the loss diverged)."""
    import importlib.util

    _limit_threads(threads)
    from .api import build_program
    from .runtime import train as tr

    _weights_path(out, "--out")
    if plot is not None and importlib.util.find_spec("matplotlib") is None:
        _fail_run("train", "--plot needs matplotlib, which is not installed: python -m pip install matplotlib")
    for option, path in (("--out", out), ("--log", options.get("log")), ("--plot", plot)):
        _require_folder("train", option, path)
    log = options.get("log")
    _refuse_overwrite("train", {"--out": out, "--log": log, "--plot": plot}, {"the spec": spec, "the --data file": data})
    _refuse_overwrite("train", {"--log": log, "--plot": plot}, {"the --init-from file": init_from})  # --out: fine
    _, prog = _run(build_program, spec, debug)
    opts = tr.Options(init_from=init_from, interruptible=True, **options)
    with _run_errors("train", spec, debug):
        run = tr.train(prog, Path(spec).name, data, opts)
        if out is not None:  # saved before anything is printed: a reader gone from stdout loses no weights
            tr.save(run, out, Path(spec).name)
        click.echo(run.summary.text())
        if out is not None:
            click.echo(f"weights saved to {out}" + (" (the last finite ones)" if run.stopped else
                                                    " (those of the last whole step)" if run.interrupted else ""))
    if plot is not None and not run.history:
        click.echo(f"no curves drawn to {plot}: the run stopped before its first epoch ended", err=True)
    elif plot is not None:
        try:
            tr.plot(run, plot, f"{Path(spec).name} on {data}")
        except (ValueError, RuntimeError, OSError) as exc:  # a format matplotlib cannot write (.txt; .pgf without LaTeX)
            if debug:
                raise
            _fail_run("train", f"--plot {plot}: matplotlib cannot draw it: {exc}")
        click.echo(f"curves drawn to {plot}")
    if run.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    if run.stopped:
        sys.exit(EXIT_CHECK_FAILED)


def _load_for_use(command: str, spec: str, weights: str, data: str, backend: str, dtype: str | None,
                  debug: bool, features_only: bool = False):
    """Compile SPEC, load its weights and bind the data: what eval and predict share."""
    from .api import build_program
    from .codegen import render_module
    from .runtime import data as datamod
    from .runtime import train as tr
    from .runtime.weights import load_weights

    _weights_path(weights, "--weights")
    _, prog = _run(build_program, spec, debug)
    with _run_errors(command, spec, debug):
        module = tr.load_module(render_module(prog), prog.name)
        arrays = load_weights(weights, dict(module.PARAMS))
        if dtype is None:
            dtype = next(iter(arrays.values())).dtype.name if arrays else "float32"
            if dtype not in ("float32", "float64"):  # float16 weights: computed in float32, as --dtype allows
                dtype = "float32"
        xp = tr.namespace(backend, dtype)
        params = {k: xp.asarray(v, dtype=getattr(xp, dtype)) for k, v in arrays.items()}
        inputs = tr.input_specs(prog)
        kind = tr.output_kind(prog)
        bound = None
        # with the targets when the data holds them (for .npz files and built-in sets they say
        # whether it is a classifier); else the features alone (new data: a .csv of feature
        # columns only, an .npz without the targets)
        if features_only:
            try:
                bound = datamod.bind(datamod.load(data, inputs, features_only), inputs, kind)
            except (tr.TrainError, ValueError):
                inputs = [i for i in inputs if i.name in tr.forward_inputs(module)]
        if bound is None:
            bound = datamod.bind(datamod.load(data, inputs, features_only), inputs, kind)
        tr.require_examples(bound, data)
        note = datamod.unused_note(command, bound, data, tr.input_specs(prog))
        if note:
            click.echo(note, err=True)
    return prog, module, xp, params, bound, kind, dtype


@main.command("eval")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--weights", required=True, type=click.Path(dir_okay=False), help=".npz or .safetensors weights.")
@click.option("--data", required=True, metavar="FILE|NAME", help=_DATA_HELP)
@click.option("--split", type=click.Choice(["all", "train", "val"]), default="all", show_default=True,
              help="Evaluate on all examples, or on the part `nnc train` trained or validated on "
                   "(with the same --seed and --val-split).")
@click.option("--val-split", type=_Finite(0, 1, max_open=True),
              help="As for nnc train (default: 0.2; 0 below 100 examples).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--backend", default="numpy", show_default=True)
@click.option("--dtype", type=click.Choice(["float32", "float64"]), help="Default: the weights' dtype.")
@_debug
def eval_cmd(spec: str, weights: str, data: str, split: str, val_split: float | None, seed: int, backend: str,
             dtype: str | None, debug: bool) -> None:
    """Evaluate SPEC with WEIGHTS: loss, accuracy and confusion matrix for classifiers."""
    from .runtime import data as datamod
    from .runtime import train as tr

    prog, module, xp, params, bound, kind, dtype = _load_for_use("eval", spec, weights, data, backend, dtype,
                                                                 debug)
    with _run_errors("eval", spec, debug):
        if split != "all":
            share = tr.default_val_split(len(bound)) if val_split is None else val_split
            train_idx, val_idx = datamod.split(len(bound), share, seed)
            chosen = train_idx if split == "train" else val_idx
            if len(chosen) == 0:
                raise tr.TrainError(
                    f"--split {split} has no examples: {len(bound)} examples with --val-split {share:g}"
                    + (" (the default below 100 examples)" if val_split is None else "")
                    + "; pass --val-split (as to nnc train) or --split all")
            bound = bound.take(chosen)
        kinds = {i.name: i.kind for i in tr.input_specs(prog)}
        result = tr.evaluate(module, params, tr.Device.put(xp, bound, kinds, dtype), kind)
    _note_left_out("eval", module, bound)
    click.echo(f"{Path(spec).name} with {weights} on {data} ({split}: {len(bound)} "
               f"example{'s' if len(bound) != 1 else ''})")
    click.echo(f"loss      {result.loss:.6g}")
    if result.accuracy is not None:
        predicted, truth = result.classes.ravel(), bound.labels[:len(result.classes)].ravel()
        right = round(result.accuracy * len(predicted))
        per = " positions" if result.classes.ndim > 1 else ""  # int[B, T] labels: a class per position
        click.echo(f"accuracy  {result.accuracy:.4f} ({right}/{len(predicted)}{per})")
        classes = max(bound.classes or 0, int(predicted.max()) + 1, int(truth.max()) + 1)
        m = tr.confusion_matrix(truth, predicted, classes)
        for line in _confusion_lines(m):
            click.echo(line)


_MAX_MATRIX_CLASSES = 20  # a wider matrix wraps in a terminal and says nothing at a glance


def _confusion_lines(m) -> list[str]:
    """The confusion matrix, or for more than _MAX_MATRIX_CLASSES classes its largest
    off-diagonal entries (the most frequent confusions)."""
    classes = len(m)
    if classes > _MAX_MATRIX_CLASSES:
        pairs = sorted(((int(m[t, p]), t, p) for t in range(classes) for p in range(classes)
                        if t != p and m[t, p]), key=lambda e: (-e[0], e[1], e[2]))[:10]
        lines = [f"confusion matrix: {classes} classes, too many to print",
                 "most frequent confusions (true class -> predicted class: examples):" if pairs
                 else "no example is misclassified"]
        return lines + [f"  {t:>3} -> {p:<3}  {n}" for n, t, p in pairs]
    width = max(3, len(str(int(m.max()))) + 1)
    return (["confusion matrix (rows: true class, columns: predicted class)",
             " " * 4 + "".join(f"{c:>{width}}" for c in range(classes))]
            + [f"{c:>3} " + "".join(f"{v:>{width}}" for v in m[c]) for c in range(classes)])


@main.command("predict")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--weights", required=True, type=click.Path(dir_okay=False), help=".npz or .safetensors weights.")
@click.option("--data", required=True, metavar="FILE|NAME", help=_DATA_HELP)
@click.option("--out", type=click.Path(dir_okay=False), help="Write to .npy or .csv instead of stdout.")
@click.option("--raw", is_flag=True, help="Print the output values, not predicted classes.")
@click.option("--backend", default="numpy", show_default=True)
@click.option("--dtype", type=click.Choice(["float32", "float64"]), help="Default: the weights' dtype.")
@_debug
def predict_cmd(spec: str, weights: str, data: str, out: str | None, raw: bool, backend: str, dtype: str | None,
                debug: bool) -> None:
    """Run SPEC's forward pass on the data: one line per example (the class, or the output values)."""
    import numpy as np

    from .runtime import train as tr

    out_kind = Path(out).suffix.lower() if out is not None else None
    if out is not None and out_kind not in (".npy", ".csv"):
        raise click.BadParameter("predictions are written to .npy or .csv", param_hint="--out")
    _require_folder("predict", "--out", out)
    _refuse_overwrite("predict", {"--out": out}, {"the spec": spec, "the --data file": data,
                                                  "the --weights file": weights})
    prog, module, xp, params, bound, kind, dtype = _load_for_use("predict", spec, weights, data, backend, dtype,
                                                                 debug, features_only=True)
    # targets named in the data (.npz, a built-in set): decided as eval decides; a .csv's columns
    # are split by position, so there it is the spec that decides, as for features alone
    if bound.arrays.keys() == {d.var.name for d in prog.inputs} and Path(data).suffix.lower() != ".csv":
        classifier = bound.labels is not None
    else:  # features only: by the spec (class labels, or an output that is a probability or sign)
        classifier = bool(prog.inputs and prog.inputs[-1].var.dtype == "int") or kind != "score"
    with _run_errors("predict", spec, debug):
        kinds = {i.name: i.kind for i in tr.input_specs(prog)}
        result = tr.evaluate_outputs(module, params, tr.Device.put(xp, bound, kinds, dtype))
    _note_left_out("predict", module, bound)
    labels = prog.inputs[-1].var if prog.inputs and prog.inputs[-1].var.dtype == "int" else None
    positions = len(labels.shape) - (bound.mode != "single") if labels is not None else 0  # int[B, T]: 1
    # the results are stacked, examples on the first axis, also for a spec of one example a call
    stacked = "batched" if bound.mode == "single" else bound.mode
    values = result if raw or not classifier else tr.predict_classes(result, kind, stacked, positions)
    table = values.reshape(len(values), -1)
    if out is not None:
        import io

        buffer = io.BytesIO()
        if out_kind == ".npy":
            np.save(buffer, values)
        else:
            np.savetxt(buffer, table, delimiter=",", fmt="%d" if table.dtype.kind == "i" else "%.9g")
        try:  # never a half-written file, nor an old one half overwritten
            write_atomically(Path(out), buffer.getvalue())
        except OSError as exc:
            _fail_run("predict", f"cannot write {out}: {exc.strerror or exc}")
    else:
        for row in table:
            click.echo(",".join(str(int(v)) if table.dtype.kind == "i" else f"{v:.6g}" for v in row))


def _load_target(target: str, debug: bool):
    """A generated module (.py, imported) or a spec (.nn, compiled in memory), with the
    spec's text (None for a module)."""
    from .api import compile_spec, load_module, load_module_file
    from .runtime.gradcheck import what_it_did

    if not target.endswith(".py"):
        source, text = _run(compile_spec, target, debug)
        return load_module(text, Path(target).stem), source
    if not Path(target).is_file():
        raise click.UsageError(f"cannot read {target}: no such file")
    try:
        return load_module_file(target), None
    except (Exception, SystemExit) as exc:  # the user's module failed to import (or exited): report it
        if debug:
            raise
        why = f"it {what_it_did(exc)}" if isinstance(exc, SystemExit) else f"{type(exc).__name__}: {exc}"
        click.echo(f"{target}: error: cannot import the module: {why}", err=True)
        sys.exit(EXIT_BAD_INPUT)


@main.command("check")
@click.argument("target", type=click.Path(dir_okay=False))
@click.option("--dim", "dims", multiple=True, metavar="NAME=SIZE",
              help="Size of a symbolic dimension (repeatable; default: small distinct sizes).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the random point.")
@click.option("--eps", type=_Finite(min=0, min_open=True), default=None,
              help="Relative step h = eps * max(1, |x|) [1e-6; float32: 3e-3].")
@click.option("--rtol", type=_Finite(min=0), default=None, help="Relative tolerance [1e-5; float32: 1e-2].")
@click.option("--atol", type=_Finite(min=0), default=None,
              help="Absolute tolerance, times max(1, |loss|) [1e-8; float32: 1e-3].")
@click.option("--max-entries", type=click.IntRange(min=1), default=256, show_default=True,
              help="Larger arrays are checked on this many entries plus random directions.")
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True,
              help="Precision of the check; float64 is the real test, float32 a smoke test.")
@click.option("--mode", type=click.Choice(["rev", "fwd", "both"]), default="rev", show_default=True,
              help="rev: value_and_grad against finite differences; fwd: jvp (and hvp) against finite "
                   "differences; both: also jvp against value_and_grad.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_debug
def check_cmd(target: str, dims: tuple[str, ...], seed: int, eps: float | None, rtol: float | None,
              atol: float | None, max_entries: int, dtype: str, mode: str, as_json: bool, debug: bool) -> None:
    """Compare every gradient of TARGET (a spec .nn or a generated .py) with finite differences.

    Exit status: 0 all gradients pass, 1 one fails, 2 a bad spec, module or argument.
    """
    # The check evaluates small arrays thousands of times: BLAS threads only add overhead
    # there (and on a busy machine make it many times slower). Effective before NumPy loads.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    from .runtime.gradcheck import NotAModuleError, check_module

    sizes = _parse_dims(dims)
    module, _ = _load_target(target, debug)
    passed, parts = True, {}
    try:
        if mode in ("rev", "both"):
            report = check_module(module, dims=sizes, seed=seed, eps=eps, rtol=rtol, atol=atol,
                                  max_entries=max_entries, dtype=dtype, target=target)
            passed = passed and report.passed
            parts["reverse"] = report
        if mode in ("fwd", "both"):
            parts["forward"] = _check_forward(module, sizes, seed, reverse=mode == "both")
            passed = passed and parts["forward"].ok
    except NotAModuleError as exc:
        click.echo(f"{target}: error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except ValueError as exc:  # a --dim the model does not have
        raise click.UsageError(str(exc)) from None
    if as_json:
        out = {}
        if "reverse" in parts:
            out["reverse"] = json.loads(parts["reverse"].to_json())
        if "forward" in parts:
            out["forward"] = [dict(asdict(c), ok=c.ok) for c in parts["forward"].comparisons]
            if parts["forward"].error:
                out["forward"].append({"error": parts["forward"].error, "ok": False})
        click.echo(json.dumps(out["reverse"] if list(out) == ["reverse"] else out, indent=2))
    else:
        if "reverse" in parts:
            click.echo(parts["reverse"].format())
        if "forward" in parts:
            click.echo("forward mode (jvp, hvp) at a random float64 point:")
            for line in parts["forward"].lines():
                click.echo("  " + line)
            click.echo("forward mode: " + ("PASS" if parts["forward"].ok else "FAIL"))
    sys.exit(EXIT_OK if passed else EXIT_CHECK_FAILED)


def _check_forward(module, sizes: dict[str, int], seed: int, *, reverse: bool):
    """jvp against finite differences (and value_and_grad), hvp against differences of the gradient."""
    import numpy as np

    from .runtime.gradcheck import NotAModuleError, bind_dims, draw_point
    from .runtime.jvpcheck import check_forward_mode

    if not hasattr(module, "jvp"):
        raise NotAModuleError("the module has no jvp(); recompile it with this nnc to check forward mode")
    sizes = bind_dims(module.INPUTS, sizes)
    params, inputs = draw_point(module, sizes, np.random.default_rng(seed))
    with np.errstate(all="ignore"):  # a non-finite loss is the answer here, not a warning
        finite = np.isfinite(float(module.loss(params, *inputs)))
    if not finite:  # log or sqrt of an input: as the reverse check
        params, inputs = draw_point(module, sizes, np.random.default_rng(seed), positive=True)
        click.echo("forward mode: inputs and parameters drawn positive, as real-valued ones gave a "
                   "non-finite loss", err=True)
    return check_forward_mode(module, params, inputs, seed=seed, reverse=reverse)


@main.command("bench")
@click.argument("target", type=click.Path(dir_okay=False))
@click.option("--dim", "dims", multiple=True, metavar="NAME=SIZE",
              help="Size of a symbolic dimension (repeatable; default: 128, said in the output).")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--backend", default="numpy", show_default=True, help="numpy, torch, jax, array_api_strict, cupy or an array-API module.")
@click.option("--entry", "entries", metavar="NAME[,NAME...]",
              help="Entry points to time: train_step, value_and_grad, loss, forward, jvp, hvp "
                   "[default: train_step, value_and_grad, forward].")
@click.option("--rounds", type=click.IntRange(min=1), default=15, show_default=True,
              help="Timed samples per entry point, interleaved.")
@click.option("--min-time", type=_Finite(min=0, min_open=True), default=0.05, show_default=True,
              help="Seconds a timed sample lasts at least (calls per sample are calibrated to it).")
@click.option("--threads", type=click.IntRange(min=1), help="BLAS (and PyTorch) threads (default: 1, or the "
              "OPENBLAS_NUM_THREADS / OMP_NUM_THREADS you set).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the parameters and inputs.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write the results to this JSON file.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
@_debug
def bench_cmd(target: str, dims: tuple[str, ...], dtype: str, backend: str, entries: str | None, rounds: int,
              min_time: float, threads: int | None, seed: int, json_out: str | None, quiet: bool,
              debug: bool) -> None:
    """Time the generated entry points of TARGET (a spec .nn or a generated .py) on random inputs.

    Prints median, min and max time per call, calls/s and GFLOP/s (FLOPs from nnc summary's
    cost model) for each entry point. Exit status 2 on a bad spec, module or argument.
    """
    _limit_threads(threads)  # before NumPy loads: the BLAS pool is sized then
    from contextlib import nullcontext

    from .bench import BenchError, EntryError, format_table, prepare, run
    from .runtime import train as tr
    from .runtime.progress import Progress

    try:
        sizes = _parse_dims(dims)
    except click.UsageError as exc:
        _fail_run("bench", exc.message)
    _require_folder("bench", "--json", json_out)
    _refuse_overwrite("bench", {"--json": json_out}, {"the target": target})
    module, source = _load_target(target, debug)
    try:
        xp = tr.namespace(backend, dtype)
        setup = prepare(module, source, target, sizes, entries, dtype)
    except (BenchError, tr.TrainError) as exc:
        _fail_run("bench", str(exc))
    count = threads or int(os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or 1)
    limit = nullcontext()
    try:  # also in effect when NumPy was loaded before this command ran (tests, notebooks)
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(count) if threads else nullcontext()
    except ImportError:
        pass
    if backend == "torch":
        import torch

        torch.set_num_threads(count)
    progress = Progress(rounds, 1, quiet=quiet)

    def tell(text: str) -> None:
        if text.startswith("round"):
            progress.status(f"nnc bench: {text}")
        elif not quiet:
            progress.message(f"nnc bench: {text}")

    try:
        with limit:
            result = run(module, setup, target=target, backend=backend, xp=xp, dtype=dtype, seed=seed,
                         rounds=rounds, min_time=min_time, threads=str(count), progress=tell)
    except EntryError as exc:
        if debug:
            raise
        if target.endswith(".py"):
            _fail_run("bench", str(exc))
        _fail_internal(target, f"the generated {exc}")
    except Exception as exc:  # a bug in nnc or in the --backend namespace: one line, never a traceback
        if debug:
            raise
        _fail_internal(target, f"{type(exc).__name__}: {exc}")
    finally:
        progress.close()
    click.echo(format_table(result))
    if json_out is not None:
        try:
            write_atomically(Path(json_out), json.dumps(result.to_json(), indent=2) + "\n")
        except OSError as exc:
            _fail_run("bench", f"cannot write {json_out}: {exc.strerror or exc}")


if __name__ == "__main__":  # pragma: no cover
    main()
