"""Long generated lines broken the way a person would break them.

Statements longer than `WIDTH` are split before their top-level `+` and `-` (PEP 8's
"break before binary operators"), inside parentheses that leave the value unchanged;
item lists (the OPTIMIZER settings) are filled line by line. A line with nothing to
break at stays as it is.
"""

from __future__ import annotations

import re

WIDTH = 100
_HEAD = re.compile(r"(\s*[A-Za-z_][\w.]* (?:[-+*/@]?=) )(.+)")


def _top_level_terms(expr: str) -> list[str]:
    """`expr` cut before each ` + ` and ` - ` outside brackets: ["a", "+ b", "- c"]."""
    terms, depth, start, i = [], 0, 0, 0
    while i < len(expr):
        ch = expr[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and expr.startswith((" + ", " - "), i):
            terms.append(expr[start:i])
            start = i + 1
            i += 3
            continue
        i += 1
    return terms + [expr[start:]]


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
    lines, current = [], head + "(" + terms[0]
    for term in terms[1:]:
        if indent + len(current) + 1 + len(term) + 1 <= width:  # + 1: the closing parenthesis
            current += " " + term
        else:
            lines.append(current)
            current = continuation + term
    return "\n".join(lines + [current + ")"])


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
