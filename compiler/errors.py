"""Source spans, the NncError family, and the one diagnostic renderer."""

from __future__ import annotations

import difflib
import unicodedata
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
    """One located problem in a spec: a message, an optional help text and notes.

    Each note is (text, span or None); a located note is shown with its own source line
    (e.g. "'W' was declared here").
    """

    message: str
    span: Span | None = None
    help: str | None = None
    notes: tuple[tuple[str, Span | None], ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        if self.span is None:
            return self.message
        return f"{self.span.line}:{self.span.col}: {self.message}"


class SpecErrors(NncError):
    """Several independent problems found in one spec, reported together (sorted, deduplicated)."""

    MAX_REPORTED = 20

    def __init__(self, errors: Iterable[SpecError]):
        unique: dict[tuple, SpecError] = {}
        for err in errors:
            key = (err.span or Span(0, 0, 0, 0), err.message)
            unique.setdefault(key, err)
        self.errors = [unique[k] for k in sorted(unique)]
        super().__init__("; ".join(str(e) for e in self.errors))


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A `help:` text suggesting the closest known name, if one is close."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


# ---- rendering ----------------------------------------------------------------------------

MAX_SHOWN = 100  # characters of a source line shown around the span (specs can be one huge line)


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _printable(ch: str) -> str:
    """A source character as shown: tabs as one space, control characters as U+FFFD."""
    if ch == "\t":
        return " "
    return ch if ch.isprintable() else "\ufffd"


def _caret_lines(source_lines: list[str], span: Span) -> list[str]:
    """The source line of `span` and a line with `^~~~` under the span.

    Columns count characters (as Lark does); the display pads by each character's
    terminal width, so the caret stays under the span even after wide characters.
    """
    if not 1 <= span.line <= len(source_lines):
        return []
    text = source_lines[span.line - 1].rstrip("\r\n")
    col = max(1, min(span.col, len(text) + 1))
    end = span.end_col if span.end_line == span.line else len(text) + 1
    end = max(col + 1, min(end, len(text) + 1))
    start = 0
    if len(text) > MAX_SHOWN:  # a window around the span
        start = max(0, min(col - 1 - MAX_SHOWN // 2, len(text) - MAX_SHOWN))
        end = min(end, start + MAX_SHOWN + 1)
    shown = text[start: start + MAX_SHOWN] if len(text) > MAX_SHOWN else text
    prefix = "..." if start > 0 else ""
    suffix = "..." if start + len(shown) < len(text) else ""
    display = "".join(_printable(c) for c in shown)
    lead = sum(_char_width(_printable(c)) for c in shown[: col - 1 - start])
    width = sum(_char_width(_printable(c)) for c in shown[col - 1 - start: end - 1 - start])
    gutter = f"{span.line:>4} | "
    pad = " " * (len(gutter) + len(prefix) + lead)
    return [gutter + prefix + display + suffix, pad + "^" + "~" * (max(1, width) - 1)]


def render_diagnostic(err: SpecError, source: str, path: str) -> str:
    """Render `FILE:LINE:COL: error: MESSAGE`, the source line, a caret, notes and help."""
    lines = source.split("\n")  # as Lark counts lines: only "\n" ends one
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
        out += [f"help: {h}" for h in err.help.splitlines()]
    return "\n".join(out)


def render_errors(exc: SpecError | SpecErrors, source: str, path: str) -> str:
    """Every diagnostic of `exc`, at most SpecErrors.MAX_REPORTED, and a count when several."""
    errors = exc.errors if isinstance(exc, SpecErrors) else [exc]
    shown = errors[: SpecErrors.MAX_REPORTED]
    text = "\n".join(render_diagnostic(e, source, path) for e in shown)
    if len(errors) > len(shown):
        text += f"\n... and {len(errors) - len(shown)} more errors"
    if len(errors) > 1:
        text += f"\n{len(errors)} errors"
    return text
