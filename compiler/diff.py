"""Sections of a generated module, and unified diffs of two modules section by section.

Each hunk header names the spec line its first change comes from, taken from the nearest
`# SPEC.nn:LINE  text` comment above it (generated code has one per block), the way git
names the enclosing function: so a change in generated code leads back to the spec.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

# Sections in module order; a top-level function, class or assignment belongs to the section
# its name maps to, everything else (docstring, metadata, helpers, input checks, init_params)
# to "header". A top-level comment or closing bracket stays in the section it is in.
SECTIONS = ("header", "forward", "backward", "forward-mode", "optimizer", "weights")
SECTION_OF = {
    "forward": "forward", "loss": "forward", "value_and_grad": "backward",
    "jvp": "forward-mode", "hvp": "forward-mode", "init_optimizer": "optimizer", "train_step": "optimizer",
    "_perceptron_direction": "optimizer", "_loss_and_sgd_steps": "optimizer", "_CudaKernel": "optimizer",
    "_CUDA_UPDATE": "optimizer", "_STATE_KEYS": "optimizer",
    "_replace_file": "weights", "_to_numpy": "weights", "_float_dtype": "weights", "_check_weights": "weights",
    "_write_weights": "weights", "_read_weights": "weights", "save_params": "weights", "load_params": "weights",
}
_DEF = re.compile(r"(?:def|class) (\w+)\b|(\w+) = ")
_TRACE = re.compile(r"^\s*# (\S+:\d+(?:-\d+)?)  (.*)$")  # a statement over lines 6-8: "spec.nn:6-8"
_TRACE_FILE = re.compile(r"^(\s*# )\S+(:\d+(?:-\d+)?  )")


def split_sections(text: str) -> dict[str, list[tuple[int, str]]]:
    """(file line number, line) pairs per section, in SECTIONS order (absent ones empty)."""
    out: dict[str, list[tuple[int, str]]] = {name: [] for name in SECTIONS}
    current, in_string = "header", False
    for number, line in enumerate(text.splitlines(), start=1):
        if in_string:  # SOURCE = """...: the spec's own `loss = ...` lines are text, not code
            in_string = '"""' not in line
        else:
            m = _DEF.match(line)
            if m:
                current = SECTION_OF.get(m.group(1) or m.group(2), "header")
                in_string = m.group(2) is not None and line.count('"""') == 1
            elif line.strip() and not line[0].isspace() and not line.startswith(("#", ")", "]", "}")):
                current = "header"
        out[current].append((number, line))
    return out


def section_text(text: str, section: str) -> str:
    """Just one section of a module's text (blank lines around it trimmed)."""
    lines = [line for _, line in split_sections(text)[section]]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines) + "\n" if lines else ""


@dataclass
class SectionDiff:
    section: str
    lines: list[str]  # the unified diff, without line endings


def _key(line: str) -> str:
    return _TRACE_FILE.sub(r"\1SPEC\2", line)


def _trace(lines: list[tuple[int, str]], index: int) -> str:
    for _, line in reversed(lines[: index + 1]):
        m = _TRACE.match(line)
        if m:
            return f"{m.group(1)}  {m.group(2)}"
    return ""


def diff_sections(old: str, new: str, old_label: str, new_label: str, context: int = 3) -> list[SectionDiff]:
    """Unified diffs of the sections that differ; line numbers are those of the whole files."""
    a_all, b_all = split_sections(old), split_sections(new)
    diffs = []
    for section in SECTIONS:
        a, b = a_all[section], b_all[section]
        a_text, b_text = [t for _, t in a], [t for _, t in b]
        # Trace comments are compared without their file name, so diffing two differently
        # named specs shows only the lines that really changed.
        a_key, b_key = [_key(t) for t in a_text], [_key(t) for t in b_text]
        if a_key == b_key:
            continue
        out = [f"--- {old_label} [{section}]", f"+++ {new_label} [{section}]"]
        matcher = difflib.SequenceMatcher(None, a_key, b_key, autojunk=False)
        for group in matcher.get_grouped_opcodes(context):
            (_, i1, _, j1, _), (_, _, i2, _, j2) = group[0], group[-1]
            first = next(op for op in group if op[0] != "equal")
            trace = _trace(b, first[3]) if first[3] < len(b) else ""
            trace = trace or (_trace(a, first[1]) if first[1] < len(a) else "")
            out.append(f"@@ -{_range(a, i1, i2)} +{_range(b, j1, j2)} @@" + (f" {trace}" if trace else ""))
            for tag, k1, k2, l1, l2 in group:
                if tag == "equal":
                    out += [" " + t for t in b_text[l1:l2]]
                    continue
                out += ["-" + t for t in a_text[k1:k2]]
                out += ["+" + t for t in b_text[l1:l2]]
        diffs.append(SectionDiff(section, out))
    return diffs


def _range(lines: list[tuple[int, str]], start: int, stop: int) -> str:
    """`first,count` in file line numbers (unified-diff convention for an empty range)."""
    count = stop - start
    if start < len(lines):
        first = lines[start][0]
    else:
        first = (lines[-1][0] + 1) if lines else 1
    if count == 0:
        return f"{first - 1},0"
    return f"{first},{count}" if count != 1 else f"{first}"


def generator_note(module_text: str, version: str) -> str | None:
    """A note when a module says it was generated by another nnc version (its diff may be noise)."""
    m = re.search(r"generated by nnc (\S+) from", module_text[:400])
    if m is None:
        return "this file does not look like a module generated by nnc"
    if m.group(1) != version:
        return f"this file was generated by nnc {m.group(1)}; this is nnc {version}"
    return None
