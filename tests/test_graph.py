"""`nnc graph`: the DOT text's structure, textbook values on worked example 1, rendering."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import SPECS
from nnc.api import build_program
from nnc.cli import main
from nnc.graph import to_dot

NODE = re.compile(r'^\s*"([^"]+)" \[label=')
EDGE = re.compile(r'^\s*"([^"]+)" -> "([^"]+)" \[label=(.*)\];$')
MAZUR_INPUTS = ["--input", "i=[0.05, 0.10]", "--input", "t=[0.01, 0.99]"]


def _parse(text: str):
    nodes = [m.group(1) for m in map(NODE.match, text.splitlines()) if m]
    edges = [m.groups() for m in map(EDGE.match, text.splitlines()) if m]
    return nodes, edges


def _prog(name: str):
    path = SPECS / f"{name}.nn"
    return build_program(path.read_text(), str(path))


def test_forward_graph_structure():
    prog = _prog("mlp")
    text = to_dot(prog)
    assert text.startswith('digraph "mlp" {') and text.rstrip().endswith("}")
    nodes, edges = _parse(text)
    assert len(nodes) == len(set(nodes)), "node ids are unique"
    consts = [n for n in nodes if n.startswith("const")]
    expected = {d.var.name for d in prog.inputs} | {p.var.name for p in prog.params} | {
        e.out.name for e in prog.eqns}
    assert set(nodes) - set(consts) == expected
    for e in prog.eqns:  # one in-edge per operand, from its producer
        into = [src for src, dst, _ in edges if dst == e.out.name]
        assert len(into) == len(e.inputs)
        assert [s for s in into if not s.startswith("const")] == [a.name for a in e.inputs if hasattr(a, "name")]
    assert len(edges) == sum(len(e.inputs) for e in prog.eqns)
    labels = {(src, dst): label for src, dst, label in edges}
    first = prog.eqns[0]  # x @ h1.W
    assert labels[("x", first.out.name)] == '"[B, 784]"'
    assert labels[("h1_W", first.out.name)] == '"[784, 256]"'
    assert 'label="mlp.nn:5  h1 = relu(dense(x, 256))"' in text
    assert "peripheries=2" in text  # the loss


def test_backward_graph_adds_adjoint_nodes_and_gradients():
    prog = _prog("mazur")
    nodes, edges = _parse(to_dot(prog, backward=True))
    for e in prog.backward:
        assert e.out.name in nodes
    for name, _ in prog.grads:
        assert f"grad:{name}" in nodes
        assert sum(1 for _, dst, _ in edges if dst == f"grad:{name}") == 1
    assert len(edges) == sum(len(e.inputs) for e in prog.eqns + prog.backward) + len(prog.grads)


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+(?:e-?\d+)?|-?\d+(?:e-?\d+)?", text)]


def _annotation(edges, src: str, dst_prefix: str = "") -> tuple[list[float], list[float]]:
    for s, d, label in edges:
        if s == src and d.startswith(dst_prefix):
            value = re.search(r'<font color="#1a7f37">(.*?)</font>', label).group(1)
            grad = re.search(r'<font color="#cf222e">grad (.*?)</font>', label)
            return _numbers(value), _numbers(grad.group(1)) if grad else []
    raise AssertionError(f"no edge from {src}")


def _textbook(v: float):
    return pytest.approx(v, abs=2e-9)  # the textbook prints 9 decimals


def test_values_reproduce_worked_example_1():
    """Every textbook figure of the 2-2-2 sigmoid network appears on its edge."""
    result = CliRunner().invoke(main, ["graph", str(SPECS / "mazur.nn"), "--values", "--digits", "10",
                                       *MAZUR_INPUTS])
    assert result.exit_code == 0, result.output
    edges = _parse(result.output)[1]
    approx = _textbook
    value, grad = _annotation(edges, "net_h")
    assert value[0] == approx(0.3775)
    value, grad = _annotation(edges, "out_h")
    assert value == [approx(0.593269992), approx(0.596884378)]
    assert grad[0] == approx(0.036350306)  # dE/dout_h1
    value, grad = _annotation(edges, "out_o")
    assert value == [approx(0.75136507), approx(0.772928465)]
    assert grad[0] == approx(0.74136507)  # dE/dout_o1
    _, grad = _annotation(edges, "W2")
    assert grad[0] == approx(0.082167041)  # dE/dw5
    _, grad = _annotation(edges, "W1")
    assert grad[0] == approx(0.000438568)  # dE/dw1
    loss_line = next(ln for ln in result.output.splitlines() if ln.strip().startswith('"loss" [label='))
    assert _numbers(re.search(r'label="(.*?)"', loss_line).group(1))[-1] == approx(0.298371109)


def test_values_from_a_data_file(tmp_path):
    import numpy as np

    data = tmp_path / "pair.npz"
    np.savez(data, i=np.array([0.05, 0.10]), t=np.array([0.01, 0.99]))
    result = CliRunner().invoke(main, ["graph", str(SPECS / "mazur.nn"), "--data", str(data), "--digits", "9"])
    assert result.exit_code == 0, result.output
    assert _annotation(_parse(result.output)[1], "out_h")[0][0] == pytest.approx(0.593269992, abs=1e-9)
    # an --input overrides the file's value, but two of them are an error (the last one won)
    again = CliRunner().invoke(main, ["graph", str(SPECS / "mazur.nn"), "--data", str(data),
                                      "--input", "i=[1, 2]", "--input", "i=[3, 4]"])
    assert again.exit_code == 2 and "--input i is given twice" in again.output, again.output
    override = CliRunner().invoke(main, ["graph", str(SPECS / "mazur.nn"), "--data", str(data), "--digits", "9",
                                         "--input", "i=[0.05, 0.1]"])
    assert override.output == result.output


@pytest.mark.parametrize("args,message", [
    (["--values"], "missing a value for input 'i'"),
    (["--input", "i=[1, 2, 3]", "--input", "t=[0, 1]"], "input 'i' must have shape [2], got [3]"),
    (["--input", "i=oops", "--input", "t=[0, 1]"], "must be a number or a list"),
    (["--input", "q=1", "--input", "i=[1, 2]", "--input", "t=[0, 1]"], "q: not an input of model mazur"),
    (["-o", "graph.jpg"], "must end in .svg, .png, .pdf, .dot or .gv"),
    (["--input", "x=[[1, 2, 3, 4]]", "--input", "y=[0.5]"], "input 'y' holds class labels"),
    (["--input", "x=[[1, 2, 3, 4]]", "--input", "y=[3]"], "input 'y' holds class labels in [0, 3), got values from 3 to 3"),
    (["--input", "x=[[1, 2, 3, 4]]", "--input", "y=[-1]"], "input 'y' holds class labels in [0, 3)"),
    # (found by the sweep of tests/unseen7: the last of two values was drawn, and JSON's NaN and
    # 1e400 (inf) were drawn as nan edges, with NumPy's RuntimeWarning from "<string>:1")
    (["--input", "i=[1, 2]", "--input", "t=[0, 1]", "--input", "i=[3, 4]"], "--input i is given twice"),
    (["--input", "i=[NaN, 2]", "--input", "t=[0, 1]"], "input 'i' holds nan or inf (at [0])"),
    (["--input", "i=[1, 2]", "--input", "t=[0, 1e400]"], "input 't' holds nan or inf (at [1])"),
])
def test_bad_arguments_exit_2(args, message, tmp_path):
    spec = "svm.nn" if any(a.startswith("y=") for a in args) else "mazur.nn"
    result = CliRunner().invoke(main, ["graph", str(SPECS / spec), *args])
    assert result.exit_code == 2
    assert message in result.output


def test_missing_dot_program_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    out = tmp_path / "g.svg"
    result = CliRunner().invoke(main, ["graph", str(SPECS / "xor.nn"), "-o", str(out)])
    assert result.exit_code == 2  # docs/errors.md: a bad argument on this machine
    assert "Graphviz 'dot' program is not installed" in result.output and "apt-get install graphviz" in result.output
    assert not out.exists()
    dot_file = tmp_path / "g.dot"  # DOT text needs no Graphviz
    assert CliRunner().invoke(main, ["graph", str(SPECS / "xor.nn"), "-o", str(dot_file)]).exit_code == 0
    assert dot_file.read_text().startswith('digraph "xor"')


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed (apt-get install graphviz)")
@pytest.mark.parametrize("suffix,magic", [(".svg", b"<svg"), (".png", b"\x89PNG")])
def test_renders_pictures_with_dot(suffix, magic, tmp_path):
    out = tmp_path / f"mazur{suffix}"
    args = ["graph", str(SPECS / "mazur.nn"), "--backward", *MAZUR_INPUTS, "-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert magic in data[:400]
    if suffix == ".svg":
        assert "0.5933" in data.decode() and "gradient of W1" in data.decode()


def test_bad_spec_is_a_located_error(tmp_path):
    bad = tmp_path / "bad.nn"
    bad.write_text("model bad\ninput x : float[2]\nloss = sum(y)\n")
    result = CliRunner().invoke(main, ["graph", str(bad)])
    assert result.exit_code == 2
    assert "bad.nn:3:" in result.output and "Traceback" not in result.output


def test_output_in_a_missing_folder_is_exit_2(tmp_path):
    for name in ("g.dot", "g.svg"):
        r = CliRunner().invoke(main, ["graph", str(SPECS / "xor.nn"), "-o", str(tmp_path / "nowhere" / name)])
        assert r.exit_code == 2, r.output
        assert "no such directory" in r.output and "Traceback" not in r.output


def test_a_failed_render_leaves_no_file(tmp_path, monkeypatch):
    """dot writes a temporary file renamed over -o once whole: a failure keeps the old picture."""
    import subprocess

    from nnc import graph

    out = tmp_path / "g.svg"
    out.write_text("old picture")

    def failing(cmd, **kwargs):
        Path(cmd[cmd.index("-o") + 1]).write_text("half")
        return subprocess.CompletedProcess(cmd, 1, b"", b"out of memory")

    monkeypatch.setattr(graph.shutil, "which", lambda name: "/usr/bin/dot")
    monkeypatch.setattr(graph.subprocess, "run", failing)
    r = CliRunner().invoke(main, ["graph", str(SPECS / "xor.nn"), "-o", str(out)])
    assert r.exit_code == 1 and "dot failed: out of memory" in r.output
    assert out.read_text() == "old picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.svg"]


@pytest.mark.parametrize("values, message", [
    ({"x": [[1, 2, 3]] * 4, "q": [[1, 2]] * 3},
     "input 'q' must have shape [3, B], got [3, 2]: B is 2 here but 4 in input 'x'"),
    ({"x": [[1, 2, 3]] * 4, "q": [[1] * 4] * 3}, None),
])
def test_a_symbolic_size_clash_names_the_input_that_gave_the_size(values, message, tmp_path):
    """--values with B = 4 from x but 2 from q said only 'must have shape [3, B], got [3, 2]',
    with nothing on where B = 4 came from (found by the sweep of tests/unseen9)."""
    spec = tmp_path / "ts.nn"
    spec.write_text("model ts\ninput x : float[B, 3]\ninput q : float[3, B]\n"
                    "h = x @ q\nloss = sum(h)\n")
    data = tmp_path / "d.json"
    data.write_text(json.dumps(values))
    r = CliRunner().invoke(main, ["graph", str(spec), "--data", str(data)])
    if message is None:
        assert r.exit_code == 0, r.output
    else:
        assert r.exit_code == 2 and message in r.output, r.output


@pytest.mark.parametrize("returncode, message", [
    (-9, "dot failed: dot was killed by SIGKILL before it finished"),
    (3, "dot failed: dot exited with status 3 and no message"),
])
def test_a_silent_dot_failure_says_how_dot_ended(returncode, message, tmp_path, monkeypatch):
    """dot killed by a signal (out of memory, a user's kill of a layout that ran for minutes on
    tests/unseen3/deep120.nn --backward) says nothing on stderr: the error was 'dot failed: '
    (found by the sweep of tests/unseen9)."""
    import subprocess

    from nnc import graph

    monkeypatch.setattr(graph.shutil, "which", lambda name: "/usr/bin/dot")
    monkeypatch.setattr(graph.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, returncode, b"", b""))
    r = CliRunner().invoke(main, ["graph", str(SPECS / "xor.nn"), "-o", str(tmp_path / "g.svg")])
    assert r.exit_code == 1 and message in r.output, r.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, content, message", [
    ("d.npz", b"\x93NUMPY", "d.npz: not an .npz archive (a zip file of arrays"),  # not called a pickle
    ("d.json", b'{"x": [[0, 1]', "d.json:1:14: not valid JSON"),
    ("missing.json", None, "does not exist"),
    ("missing.npz", None, "does not exist"),  # was "not an .npz archive" (sweep 19)
])
def test_bad_data_files_are_usage_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    r = CliRunner().invoke(main, ["graph", str(SPECS / "xor.nn"), "--data", str(path)])
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output


def test_dash_output_is_stdout_as_for_compile(tmp_path):
    """-o - was refused ('must end in .svg ...'), where nnc compile -o - writes to stdout."""
    dash = CliRunner().invoke(main, ["graph", str(SPECS / "xor.nn"), "-o", "-"])
    plain = CliRunner().invoke(main, ["graph", str(SPECS / "xor.nn")])
    assert dash.exit_code == 0 and dash.output == plain.output and dash.output.startswith("digraph")
    assert not (Path.cwd() / "-").exists()


def test_data_files_a_user_writes_are_read(tmp_path):
    """A .json with a byte-order mark (Windows editors), and an .npy saved under an .npz name is refused."""
    import numpy as np

    (tmp_path / "d.json").write_bytes(b'\xef\xbb\xbf{"x": [[0, 1]], "y": [[1]]}')
    r = CliRunner().invoke(main, ["graph", str(SPECS / "xor.nn"), "--data", str(tmp_path / "d.json")])
    assert r.exit_code == 0, r.output
    np.save(tmp_path / "a.npy", np.zeros(3))
    (tmp_path / "a.npy").rename(tmp_path / "a.npz")
    r = CliRunner().invoke(main, ["graph", str(SPECS / "xor.nn"), "--data", str(tmp_path / "a.npz")])
    assert r.exit_code == 2 and "not an .npz archive" in r.output, r.output


@pytest.mark.parametrize("spec", sorted(p.stem for p in SPECS.glob("*.nn")))
def test_graph_size_counts_what_the_parser_finds(spec):
    """graph_size, which decides whether nnc graph warns that dot may take minutes, counts the
    nodes and edges this file's own parser finds, forward and with the backward equations."""
    from nnc.graph import graph_size

    for backward in (False, True):
        text = to_dot(_prog(spec), backward=backward)
        nodes, edges = _parse(text)
        assert graph_size(text) == (len(nodes), len(edges))


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed (apt-get install graphviz)")
def test_a_large_graph_is_announced_before_dot_lays_it_out(tmp_path, monkeypatch):
    """dot's layout grows much faster than the graph (tests/unseen3/deep120.nn --backward, 2,383
    nodes, ran for over 5 minutes without a word, as if hung); above LARGE_GRAPH nodes nnc graph
    says how large the graph is, that Ctrl-C stops it and that -o FILE.dot needs no layout.
    Small graphs, and DOT text, get no note."""
    from nnc import graph

    r = CliRunner().invoke(main, ["graph", str(SPECS / "xor.nn"), "--backward", "-o", str(tmp_path / "g.svg")])
    assert r.exit_code == 0 and "note:" not in r.stderr, r.stderr
    monkeypatch.setattr(graph, "LARGE_GRAPH", 10)
    r = CliRunner().invoke(main, ["graph", str(SPECS / "xor.nn"), "--backward", "-o", str(tmp_path / "h.svg")])
    nodes, edges = _parse(to_dot(_prog("xor"), backward=True))
    assert r.exit_code == 0, r.output
    assert f"note: dot lays out {len(nodes)} nodes and {len(edges)} edges for h.svg" in r.stderr
    # the path as given, not its name alone (sweep 19: -o bad/c.svg suggested -o c.dot)
    assert f"Ctrl-C stops it; -o {tmp_path / 'h.dot'} writes the DOT text at once" in r.stderr
    assert (tmp_path / "h.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    r = CliRunner().invoke(main, ["graph", str(SPECS / "xor.nn"), "--backward", "-o", str(tmp_path / "h.dot")])
    assert r.exit_code == 0 and "note:" not in r.stderr, r.stderr


def test_dot_waiting_is_called_while_dot_works_and_an_interrupt_kills_it(tmp_path):
    """The ticker (`dot: 12 s` on a terminal) is called about once a second while the renderer
    runs, with its input fed and its output kept; an exception from it (Ctrl-C arrives as a
    KeyboardInterrupt between waits) kills the renderer before it propagates."""
    from nnc.graph import _run_dot

    seen = []
    result = _run_dot(["sh", "-c", "sleep 2.3; cat; echo said >&2"], b"text in\n", seen.append)
    assert result.returncode == 0 and result.stdout == b"text in\n" and result.stderr == b"said\n"
    assert len(seen) == 2 and seen[0] < seen[1], seen
    pidfile = tmp_path / "pid"

    def interrupt(seconds):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run_dot(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"], b"", interrupt)
    import os

    with pytest.raises(ProcessLookupError):  # killed and reaped, not left running
        os.kill(int(pidfile.read_text()), 0)


def test_a_nan_number_input_is_not_located_at_an_empty_index():
    """`--input x=NaN` said "holds nan or inf (at [])" (sweep 20)."""
    result = CliRunner().invoke(main, ["graph", str(SPECS / "xor.nn"), "--input", "x=NaN", "--input", "y=1"])
    assert result.exit_code == 2, result.output
    assert "input 'x' holds nan or inf" in result.output and "(at [])" not in result.output
