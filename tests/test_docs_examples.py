"""Every example in README.md and docs/*.md runs as written, and shows what nnc really prints.

Each fenced block's info string says what it is (the first word is the language, the
rest are attributes):

| tag | what the test does |
|---|---|
| `nn` | compiles the spec; a first line `# NAME.nn` also writes it to the doc's folder. `nn error`: a bad spec, written but not compiled here (its command shows the diagnostic) |
| `python` | runs it in the doc's namespace (one per doc file, blocks in order) |
| `pycon` | a `>>>` session, run by doctest in the same namespace: the printed output and exceptions must match |
| `python excerpt of=PATH` | not run: must appear in PATH (a repository file, or the module compiled from a spec) |
| `console` | each `$ ` line is run by bash; the lines after it are its output (stdout and stderr) |
| `bash`, `sh` | each line is a command, run by bash; no output shown |
| `text` | not run: synopses, formulas, file contents |

A command's exit status must be 0 unless its line ends with a comment `# exit status N`.
Output is compared with doctest's `...` wildcard, after normalising durations and rates
(`0.51 s`, `2038 steps/s`); in a block marked `approx` every number with a fraction or an
exponent (a measurement: `0.726`, `8.6e-11`) matches any number, with `approx=all` every number,
and runs of spaces within a line count as one (table columns widen with their numbers).
`requires=NAME` skips a block (saying why) where NAME is missing: `jax`, `torch`, `dask`,
`matplotlib`, `dot` (Graphviz) or `cupy` (CuPy with a GPU).

Each doc file gets one temporary folder, holding a copy of `specs/`, in which its
commands and Python blocks run; `nnc` and `python` there are the interpreter running
the tests, so the checked code is the code under test.
"""

from __future__ import annotations

import doctest
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nnc.api import compile_spec
from nnc.errors import NncError

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGS = {"nn", "python", "pycon", "console", "bash", "sh", "text"}
ATTRS = {"approx", "error", "excerpt", "of", "requires"}
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+)(?P<info>.*)$")
EXIT = re.compile(r"#\s*exit status (\d+)\s*$")

# Commands a doc shows that this test must not run, with the reason it gives.
NOT_RUN = (
    (re.compile(r"\bpip install\b"), "installs packages; the tests run on an installed nnc"),
    (re.compile(r"\bpython -m pytest\b"), "runs the test suite (or rewrites its goldens); this test is part of it"),
    (re.compile(r"\bbenchmarks/bench\.py\b"), "a benchmark of minutes; tests/test_bench.py runs its --quick mode"),
)
# Commands run in a quick mode their doc describes (options it lists), to keep this test fast.
QUICK = ((re.compile(r"^nnc bench "), " --rounds 3 --min-time 0.005"),)
# What legitimately varies between runs: durations and rates.
TIMING = re.compile(r"\d[\d,]*(?:\.\d+)?\s*(?:ms|us|µs|s)\b(?:\s*\(\d[\d,.]* steps/s\))?")
MEASURED = re.compile(r"[-+]?\d[\d,]*(?:\.\d+(?:[eE][-+]?\d+)?|[eE][-+]?\d+)")  # 0.726, 8.6e-11, 1e-06
NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Block:
    doc: str  # path relative to the repository
    line: int  # 1-based line of the opening fence
    lang: str
    attrs: dict[str, str]  # `approx` -> "", `requires=jax` -> "jax", ...
    text: str


def parse_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, with their info strings split."""
    blocks, lines, i = [], path.read_text(encoding="utf-8").split("\n"), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, words = len(m["indent"]), m["fence"], m["info"].split()
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == fence)
        body = "\n".join(line[indent:] for line in lines[i + 1:end]) + "\n"
        attrs = dict(w.partition("=")[::2] for w in words[1:])
        blocks.append(Block(str(path.relative_to(ROOT)), i + 1, words[0] if words else "", attrs, body))
        i = end + 1
    return blocks


def indented_code(path: Path) -> list[int]:
    """Lines that start an indented (unfenced, so untagged) code block."""
    found, in_fence, prev = [], False, ""
    for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and not prev.strip() and line.startswith("    ") and line.strip():
            found.append(n)
        prev = line
    return found


@dataclass(frozen=True)
class Step:
    """One thing to run: a block, or one command of a shell block."""

    block: Block
    command: str = ""
    output: str = ""  # what a console block shows after the command

    @property
    def id(self) -> str:
        return f"{self.block.doc}:{self.block.line}" + (f" $ {self.command[:40]}" if self.command else "")


def steps(block: Block) -> list[Step]:
    if block.lang == "console":
        runs = re.split(r"^\$ ", block.text, flags=re.M)
        assert not runs[0].strip(), f"{block.doc}:{block.line}: a console block starts with a `$ ` command"
        return [Step(block, *run.partition("\n")[::2]) for run in runs[1:]]
    if block.lang in ("bash", "sh"):
        return [Step(block, line) for line in block.text.splitlines() if line.strip() and not line.startswith("#")]
    return [Step(block)]


ALL_BLOCKS = [b for doc in DOCS for b in parse_blocks(doc)]
ALL_STEPS = [s for b in ALL_BLOCKS if b.lang != "text" for s in steps(b)]


# ---- the tags themselves ------------------------------------------------------------------


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_code_block_is_fenced_with_a_known_tag(doc):
    assert indented_code(doc) == [], f"{doc.name}: indented code blocks (fence and tag them) at these lines"
    for block in parse_blocks(doc):
        assert block.lang in LANGS, f"{block.doc}:{block.line}: tag {block.lang!r} is not one of {sorted(LANGS)}"
        assert set(block.attrs) <= ATTRS, f"{block.doc}:{block.line}: attributes {set(block.attrs) - ATTRS}"
        assert set(filter(None, block.attrs.get("requires", "").split(","))) <= set(REQUIREMENTS)
        assert ("excerpt" in block.attrs) == ("of" in block.attrs), f"{block.doc}:{block.line}: excerpt of=PATH"


# ---- links between the docs ----------------------------------------------------------------

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


def prose(path: Path) -> str:
    """The text of a Markdown file outside fenced blocks and inline code (whose text a
    heading keeps, without the backticks, as GitHub's anchors do)."""
    kept, in_fence = [], False
    for line in path.read_text(encoding="utf-8").split("\n"):
        if FENCE.match(line):
            in_fence = not in_fence
            kept.append("")
        else:
            code = r"\1" if HEADING.match(line) else "``"
            kept.append("" if in_fence else re.sub(r"`([^`]*)`", code, line))
    return "\n".join(kept)


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lowercase, punctuation dropped, spaces to '-', repeats -1, -2."""
    found, seen = set(), {}
    for line in prose(path).split("\n"):
        if m := HEADING.match(line):
            slug = re.sub(r"[^\w\- ]", "", m[1].strip().lower()).replace(" ", "-")
            found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
            seen[slug] = seen.get(slug, 0) + 1
    return found


def test_anchor_slugs_follow_github():
    assert {"cupy-fused-update-kernels", "numpys-slow-elementwise-paths"} <= anchors(ROOT / "docs/performance.md")
    assert {"the-whole-hessian-hvp-under-vmap", "checking-a-module-nncruntimejvpcheck"} <= anchors(
        ROOT / "docs/forward-mode.md")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(doc):
    text = re.sub(r"\]\s*\n\s*\(", "](", prose(doc))  # a link may break between its text and target
    bad = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, fragment = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists() or ROOT not in file.parents:
            bad.append(f"{target}: no file {path}")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            bad.append(f"{target}: no heading '#{fragment}' in {file.relative_to(ROOT)}")
    assert not bad, f"{doc.name}: " + "; ".join(bad)


# ---- running them -------------------------------------------------------------------------


@dataclass
class Session:
    """One doc file's folder and Python namespace, shared by its blocks in order."""

    folder: Path
    env: dict[str, str]
    namespace: dict = field(default_factory=lambda: {"__name__": "__doc_example__"})


def _make_session(tmp: Path) -> Session:
    shutil.copytree(ROOT / "specs", tmp / "specs")
    bin_dir = tmp / ".bin"
    bin_dir.mkdir()
    for name, args in (("nnc", "-m nnc"), ("python", "")):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" {args} "$@"\n')
        script.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", PYTHONUNBUFFERED="1")
    # The docs show runs on this project's machines, which set these (docs/tools.md says so,
    # and nnc bench names them and the kernel they pick); a machine without them gets them here.
    env.setdefault("OPENBLAS_CORETYPE", "Haswell")
    env.setdefault("OPENBLAS_L2_SIZE", "512")
    return Session(tmp, env)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    made: dict[str, Session] = {}

    def forget_imports() -> None:
        # Modules a doc's examples imported from its folder (`import mlp`) must not be found by
        # another doc's `import mlp`, nor leak into other tests.
        folders = tuple(str(s.folder) + os.sep for s in made.values())
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", None) or "").startswith(folders):
                del sys.modules[name]

    def get(doc: str) -> Session:
        if doc not in made:
            forget_imports()
            made[doc] = _make_session(tmp_path_factory.mktemp(Path(doc).stem))
        return made[doc]

    yield get
    forget_imports()


REQUIREMENTS = {"jax": "JAX", "torch": "PyTorch", "dask": "Dask", "matplotlib": "matplotlib",
                "dot": "Graphviz's dot", "cupy": "CuPy and a GPU"}


def _available(name: str) -> bool:
    if name == "dot":
        return shutil.which("dot") is not None
    if importlib.util.find_spec(name) is None:
        return False
    if name == "cupy":
        try:
            import cupy
            return cupy.cuda.runtime.getDeviceCount() > 0
        except Exception:  # noqa: BLE001 - CuPy without a driver or device raises its own errors
            return False
    return True


def normalise(text: str, approx: str | None) -> str:
    text = "\n".join(line.rstrip() for line in text.strip("\n").split("\n"))
    text = TIMING.sub("<time>", text)
    if approx is not None:  # measured numbers vary, and so do the widths of columns aligned on them
        text = re.sub(r" *#+ *", " # ", (NUMBER if approx == "all" else MEASURED).sub("#", text))
        text = re.sub(r"(?<=\S) {2,}", " ", text)
    return text


def assert_output(step: Step, got: str) -> None:
    approx = step.block.attrs.get("approx")
    want, got = normalise(step.output, approx), normalise(got, approx)
    checker = doctest.OutputChecker()
    if not checker.check_output(want + "\n", got + "\n", doctest.ELLIPSIS):
        example = doctest.Example(step.command, want + "\n")
        pytest.fail(f"{step.id}: output differs\n"
                    + checker.output_difference(example, got + "\n", doctest.ELLIPSIS))


def run_command(step: Step, session: Session) -> None:
    command, status = step.command.strip(), 0
    if m := EXIT.search(command):
        command, status = command[:m.start()].rstrip(), int(m[1])
    parts = command.split(" && ")
    skipped = [(p, why) for p in parts for pattern, why in NOT_RUN if pattern.search(p)]
    parts = [p for p in parts if p not in dict(skipped)]
    if not parts:
        pytest.skip("; ".join(f"`{p}`: {why}" for p, why in skipped))
    parts = [p + "".join(extra for pattern, extra in QUICK if pattern.search(p)) for p in parts]
    proc = subprocess.run(["bash", "-c", " && ".join(parts)], cwd=session.folder, env=session.env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == status, f"{step.id}: exit status {proc.returncode}, not {status}\n{proc.stdout}"
    if step.block.lang == "console":
        assert_output(step, proc.stdout)


def spec_name(text: str) -> str | None:
    m = re.match(r"# (\w+\.nn)\n", text)
    return m[1] if m else None


def run_spec(block: Block, session: Session) -> None:
    name = spec_name(block.text)
    if name:
        (session.folder / name).write_text(block.text, encoding="utf-8")
    if "error" in block.attrs:
        with pytest.raises(NncError):
            compile_spec(block.text, name or "example.nn")
    else:
        compile_spec(block.text, name or "example.nn")


def check_excerpt(block: Block, session: Session) -> None:
    source = block.attrs["of"]
    path = session.folder / source if (session.folder / source).exists() else ROOT / source
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".nn":
        text = compile_spec(text, path.name)
    want = "..." + block.text.strip("\n") + "\n..."
    assert doctest.OutputChecker().check_output(want, text, doctest.ELLIPSIS), (
        f"{block.doc}:{block.line}: this excerpt is not in {source}:\n{block.text}")


def run_python(block: Block, session: Session) -> None:
    code = compile(block.text, f"{block.doc}:{block.line}", "exec")
    exec(code, session.namespace)


def run_pycon(block: Block, session: Session) -> None:
    test = doctest.DocTestParser().get_doctest(block.text, {}, block.doc, block.doc, block.line)
    test.globs = session.namespace  # DocTest copies the globals it is given; later blocks build on these
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    result = runner.run(test, out=report.append, clear_globs=False)
    assert result.failed == 0, "".join(report)


RUNNERS = {"nn": run_spec, "python": run_python, "pycon": run_pycon}


@pytest.mark.parametrize("step", ALL_STEPS, ids=lambda s: s.id)
def test_doc_example(step, sessions, monkeypatch):
    block, session = step.block, sessions(step.block.doc)
    missing = [r for r in block.attrs.get("requires", "").split(",") if r and not _available(r)]
    if missing:
        pytest.skip(f"needs {' and '.join(REQUIREMENTS[r] for r in missing)}, not available here")
    monkeypatch.chdir(session.folder)
    monkeypatch.syspath_prepend(str(session.folder))
    if step.command:
        run_command(step, session)
    elif "excerpt" in block.attrs:
        check_excerpt(block, session)
    else:
        RUNNERS[block.lang](block, session)
