"""Long generated lines broken the way a person would break them.

Statements longer than `WIDTH` are split before their top-level `+` and `-` (PEP 8's
"break before binary operators"), inside parentheses that leave the value unchanged;
`if` conditions before their top-level `or`; item lists (the OPTIMIZER settings) are
filled line by line. A line with nothing to break at stays as it is.
"""

from __future__ import annotations

import re

WIDTH = 100
_HEAD = re.compile(r"(\s*[A-Za-z_][\w.]* (?:[-+*/@]?=) )(.+)")


def _top_level_terms(expr: str, operators: tuple[str, ...] = (" + ", " - ")) -> list[str]:
    """`expr` cut before each of `operators` outside brackets and strings:
    ["a", "+ b", "- c"]."""
    terms, depth, start, i, quote = [], 0, 0, 0, None
    while i < len(expr):
        ch = expr[i]
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and expr.startswith(operators, i):
            terms.append(expr[start:i])
            start = i + 1
            i += 3
            continue
        i += 1
    return terms + [expr[start:]]


def _fill(first: str, terms: list[str], continuation: str, closing: str, indent: int, width: int) -> str:
    """`first` then `terms`, a space apart, in lines of at most `width` columns where each
    term fits (the first line starts `indent` columns in; the others carry their own)."""
    lines, current, used = [], first, indent + len(first)
    for term in terms:
        if used + 1 + len(term) + len(closing) <= width:
            current += " " + term
            used += 1 + len(term)
        else:
            lines.append(current)
            current = continuation + term
            used = len(current)
    return "\n".join(lines + [current + closing])


def wrap_statement(statement: str, indent: int, width: int = WIDTH) -> str:
    """`statement` (to be written `indent` columns in) as one or more lines."""
    match = _HEAD.fullmatch(statement)
    if indent + len(statement) <= width or match is None or "'" in statement or '"' in statement:
        return statement
    head, expr = match.groups()
    terms = _top_level_terms(expr)
    if len(terms) == 1:
        return statement
    continuation = " " * (indent + len(head) + 1)  # under the first term, after "("
    return _fill(head + "(" + terms[0], terms[1:], continuation, ")", indent, width)


def wrap_condition(line: str, indent: int, width: int = WIDTH) -> str:
    """`if A or B or C:` longer than `width` as `if (A or B` / `or C):`, the continuation
    indented one level deeper than the body (PEP 8)."""
    if indent + len(line) <= width or not (line.startswith("if ") and line.endswith(":")):
        return line
    terms = _top_level_terms(line[3:-1], (" or ",))
    if len(terms) == 1:
        return line
    return _fill("if (" + terms[0], terms[1:], " " * (indent + 8), "):", indent, width)


def wrap_items(prefix: str, items: list[str], suffix: str, width: int = WIDTH) -> str:
    """`prefix + ", ".join(items) + suffix`, filled to `width` with continuation lines
    aligned under the first item."""
    one_line = prefix + ", ".join(items) + suffix
    if len(one_line) <= width or not items:
        return one_line
    pad = " " * len(prefix.splitlines()[-1])
    lines, current = [], prefix + items[0]
    for item in items[1:]:
        if len(current) + 2 + len(item) + len(suffix) <= width:
            current += ", " + item
        else:
            lines.append(current + ",")
            current = pad + item
    return "\n".join(lines + [current + suffix])
