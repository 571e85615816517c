"""Source spans, the NncError family, and the one diagnostic renderer."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class Span:
    """A region of the spec source: 1-based line and column, end exclusive."""

    line: int
    col: int
    end_line: int
    end_col: int

    @staticmethod
    def point(line: int, col: int) -> Span:
        return Span(line, col, line, col + 1)


class NncError(Exception):
    """Base of every error nnc reports to users (never shown with a traceback)."""


@dataclass
class SpecError(NncError):
    """One located problem in a spec."""

    message: str
    span: Span | None = None
    help: str | None = None
    notes: tuple[tuple[str, Span | None], ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        return self.message


class SpecErrors(NncError):
    """Several independent problems found in one spec, reported together."""

    MAX_REPORTED = 20

    def __init__(self, errors: Iterable[SpecError]):
        unique: dict[tuple, SpecError] = {}
        for err in errors:
            key = (err.span or Span(0, 0, 0, 0), err.message)
            unique.setdefault(key, err)
        self.errors = [unique[k] for k in sorted(unique)]
        super().__init__("; ".join(e.message for e in self.errors))


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A `help:` text suggesting the closest known name, if one is close."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def _caret_lines(source_lines: list[str], span: Span) -> list[str]:
    if not 1 <= span.line <= len(source_lines):
        return []
    text = source_lines[span.line - 1].rstrip("\r\n").expandtabs(1)
    col = max(1, min(span.col, len(text) + 1))
    end = span.end_col if span.end_line == span.line else len(text) + 1
    width = max(1, min(end, len(text) + 1) - col)
    gutter = f"{span.line:>4} | "
    return [gutter + text, " " * (len(gutter) + col - 1) + "^" + "~" * (width - 1)]


def render_diagnostic(err: SpecError, source: str, path: str) -> str:
    """Render `FILE:LINE:COL: error: MESSAGE`, the source line and a caret."""
    lines = source.splitlines()
    span = err.span
    where = f"{path}:{span.line}:{span.col}" if span else path
    out = [f"{where}: error: {err.message}"]
    if span:
        out += _caret_lines(lines, span)
    for note, note_span in err.notes:
        if note_span:
            out.append(f"{path}:{note_span.line}:{note_span.col}: note: {note}")
            out += _caret_lines(lines, note_span)
        else:
            out.append(f"note: {note}")
    if err.help:
        out.append(f"help: {err.help}")
    return "\n".join(out)


def render_errors(exc: SpecError | SpecErrors, source: str, path: str) -> str:
    errors = exc.errors if isinstance(exc, SpecErrors) else [exc]
    shown = errors[: SpecErrors.MAX_REPORTED]
    text = "\n".join(render_diagnostic(e, source, path) for e in shown)
    if len(errors) > len(shown):
        text += f"\n... and {len(errors) - len(shown)} more errors"
    if len(errors) > 1:
        text += f"\n{len(errors)} errors"
    return text
