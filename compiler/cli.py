"""The command line: a thin click shell over the library API."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click

from . import __version__
from .errors import NncError, SpecError, SpecErrors, render_errors

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _read_spec(path: str) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise click.UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path} is not valid UTF-8 text (byte {exc.start})") from None


def _fail_spec(exc: SpecError | SpecErrors, source: str, path: str) -> None:
    click.echo(render_errors(exc, source, path), err=True)
    sys.exit(EXIT_BAD_INPUT)


def _run(fn, path: str, debug: bool):
    """Run a compile step, turning spec errors into located diagnostics (exit 2)."""
    source = ""
    try:
        source = _read_spec(path)
        return source, fn(source, path)
    except (SpecError, SpecErrors) as exc:
        if debug:
            raise
        _fail_spec(exc, source, path)
    except NncError as exc:
        if debug:
            raise
        click.echo(f"{path}: error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except RecursionError:
        if debug:
            raise
        click.echo(f"{path}: error: the spec is nested too deeply to compile", err=True)
        sys.exit(EXIT_BAD_INPUT)


def write_atomically(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and a rename: never a half-written file."""
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nnc")
def main() -> None:
    """nnc: compile neural-network specs into standalone Python modules."""


_debug = click.option("--debug", is_flag=True, help="Show Python tracebacks (for nnc developers).")


@main.command("compile")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False), help="Write the module here (default: stdout).")
@_debug
def compile_cmd(spec: str, out: str | None, debug: bool) -> None:
    """Compile SPEC into a standalone Python module."""
    from .api import compile_spec

    if out is not None and Path(out).resolve() == Path(spec).resolve():
        raise click.UsageError("-o must not be the spec itself (that would overwrite your spec)")
    _, text = _run(compile_spec, spec, debug)
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        write_atomically(Path(out), text)
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror}") from None


@main.command("ir")
@click.argument("spec", type=click.Path(dir_okay=False))
@_debug
def ir_cmd(spec: str, debug: bool) -> None:
    """Print the forward and backward IR of SPEC."""
    from .api import build_program
    from .ir.printer import print_program

    _, prog = _run(build_program, spec, debug)
    click.echo(print_program(prog))


def _parse_dims(values: tuple[str, ...]) -> dict[str, int]:
    dims: dict[str, int] = {}
    for item in values:
        name, sep, size = item.partition("=")
        if not sep or not name.strip() or not size.strip().isdigit() or int(size) < 1:
            raise click.BadParameter(f"expected NAME=SIZE with a positive size, got {item!r}",
                                     param_hint="--dim")
        dims[name.strip()] = int(size)
    return dims


@main.command("check")
@click.argument("target", type=click.Path(dir_okay=False))
@click.option("--dim", "dims", multiple=True, metavar="NAME=SIZE",
              help="Size of a symbolic dimension (repeatable; default: small distinct sizes).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random point.")
@click.option("--eps", type=float, default=None, help="Relative step h = eps * max(1, |x|) [1e-6; float32: 3e-3].")
@click.option("--rtol", type=float, default=None, help="Relative tolerance [1e-5; float32: 1e-2].")
@click.option("--atol", type=float, default=None,
              help="Absolute tolerance, times max(1, |loss|) [1e-8; float32: 1e-3].")
@click.option("--max-entries", type=click.IntRange(min=1), default=256, show_default=True,
              help="Larger arrays are checked on this many entries plus random directions.")
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True,
              help="Precision of the check; float64 is the real test, float32 a smoke test.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_debug
def check_cmd(target: str, dims: tuple[str, ...], seed: int, eps: float | None, rtol: float | None,
              atol: float | None, max_entries: int, dtype: str, as_json: bool, debug: bool) -> None:
    """Compare every gradient of TARGET (a spec .nn or a generated .py) with finite differences.

    Exit status: 0 all gradients pass, 1 one fails, 2 a bad spec, module or argument.
    """
    # The check evaluates small arrays thousands of times: BLAS threads only add overhead
    # there (and on a busy machine make it many times slower). Effective before NumPy loads.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    from .api import compile_spec, load_module, load_module_file
    from .runtime.gradcheck import NotAModuleError, check_module

    sizes = _parse_dims(dims)
    if target.endswith(".py"):
        if not Path(target).is_file():
            raise click.UsageError(f"cannot read {target}: no such file")
        try:
            module = load_module_file(target)
        except Exception as exc:  # the user's module failed to import: report, no traceback
            if debug:
                raise
            click.echo(f"{target}: error: cannot import the module: {type(exc).__name__}: {exc}", err=True)
            sys.exit(EXIT_BAD_INPUT)
    else:
        _, text = _run(compile_spec, target, debug)
        module = load_module(text, Path(target).stem)
    try:
        report = check_module(module, dims=sizes, seed=seed, eps=eps, rtol=rtol, atol=atol,
                              max_entries=max_entries, dtype=dtype, target=target)
    except NotAModuleError as exc:
        click.echo(f"{target}: error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except ValueError as exc:  # a --dim the model does not have
        raise click.UsageError(str(exc)) from None
    click.echo(report.to_json() if as_json else report.format())
    sys.exit(EXIT_OK if report.passed else EXIT_CHECK_FAILED)


if __name__ == "__main__":  # pragma: no cover
    main()
