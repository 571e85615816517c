"""The command line: a thin click shell over the library API."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import click

from . import __version__
from .errors import NncError, Span, SpecError, SpecErrors, render_errors

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


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
        click.echo(f"{path}: internal error: {type(exc).__name__}: {exc}\n"
                   "note: this is a bug in nnc; rerun with --debug for a traceback and report it", err=True)
        sys.exit(EXIT_INTERNAL)


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

    if out is not None and _same_file(out, spec):
        raise click.UsageError(f"-o {out} is the spec itself; writing there would destroy the spec")
    _, text = _run(compile_spec, spec, debug)
    if out is None:
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


if __name__ == "__main__":  # pragma: no cover
    main()
