"""The command line on bad input: exit status, no tracebacks, and -o never damaging files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import SPECS
from nnc import cli
from nnc.cli import main, write_atomically

ERRORS = Path(__file__).resolve().parent / "errors"
BAD = sorted(ERRORS.glob("*.nn"))
GOOD = SPECS / "xor.nn"


def invoke(args: list[str], cwd: Path, monkeypatch):
    monkeypatch.chdir(cwd)
    return CliRunner().invoke(main, args, catch_exceptions=True)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("case", BAD, ids=[c.stem for c in BAD])
def test_error_leaves_existing_output_untouched(case: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "model.py"
    before = b"# precious\x00 bytes\n"
    out.write_bytes(before)
    os.chmod(out, 0o640)
    result = invoke(["compile", str(case), "-o", str(out)], tmp_path, monkeypatch)
    assert result.exit_code == 2
    assert out.read_bytes() == before
    assert (out.stat().st_mode & 0o777) == 0o640
    assert _leftovers(tmp_path) == []


def test_success_replaces_output_and_keeps_its_mode(tmp_path: Path, monkeypatch):
    out = tmp_path / "xor.py"
    out.write_text("old\n")
    os.chmod(out, 0o600)
    result = invoke(["compile", str(GOOD), "-o", str(out)], tmp_path, monkeypatch)
    assert result.exit_code == 0, result.stderr
    assert out.read_text().startswith('"""Model \'xor\'')
    assert (out.stat().st_mode & 0o777) == 0o600
    assert _leftovers(tmp_path) == []


def test_failed_write_leaves_no_temporary(tmp_path: Path, monkeypatch):
    """A failure between creating the temporary file and the rename cleans up."""
    out = tmp_path / "m.py"
    out.write_text("keep\n")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli.os, "replace", boom)
    result = invoke(["compile", str(GOOD), "-o", str(out)], tmp_path, monkeypatch)
    assert result.exit_code == 2
    assert "cannot write" in result.stderr and "No space left" in result.stderr
    assert out.read_text() == "keep\n"
    assert _leftovers(tmp_path) == []


def test_interrupted_write_leaves_no_temporary(tmp_path: Path, monkeypatch):
    """Ctrl-C during the write: the old file stays, the temporary goes."""
    out = tmp_path / "m.py"
    out.write_text("keep\n")

    def interrupt(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(out, "new text")
    assert out.read_text() == "keep\n"
    assert _leftovers(tmp_path) == []


def test_output_equal_to_spec_is_refused(tmp_path: Path, monkeypatch):
    spec = tmp_path / "xor.nn"
    spec.write_bytes(GOOD.read_bytes())
    for target in ["xor.nn", str(spec), "./sub/../xor.nn"]:
        (tmp_path / "sub").mkdir(exist_ok=True)
        result = invoke(["compile", "xor.nn", "-o", target], tmp_path, monkeypatch)
        assert result.exit_code == 2, target
        assert "is the spec itself" in result.stderr
        assert spec.read_bytes() == GOOD.read_bytes()


def test_output_through_a_link_to_the_spec_is_refused(tmp_path: Path, monkeypatch):
    spec = tmp_path / "xor.nn"
    spec.write_bytes(GOOD.read_bytes())
    os.symlink(spec, tmp_path / "soft.py")
    os.link(spec, tmp_path / "hard.py")
    for target in ["soft.py", "hard.py"]:
        result = invoke(["compile", "xor.nn", "-o", target], tmp_path, monkeypatch)
        assert result.exit_code == 2, target
        assert spec.read_bytes() == GOOD.read_bytes()


def test_output_in_missing_folder(tmp_path: Path, monkeypatch):
    result = invoke(["compile", str(GOOD), "-o", "no/such/dir/m.py"], tmp_path, monkeypatch)
    assert result.exit_code == 2
    assert "cannot write no/such/dir/m.py" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_spec_and_folder_spec(tmp_path: Path, monkeypatch):
    for args in (["compile", "missing.nn"], ["compile", str(tmp_path)], ["ir", "missing.nn"]):
        result = invoke(args, tmp_path, monkeypatch)
        assert result.exit_code == 2, args
        assert "Traceback" not in result.stderr


def test_internal_error_is_one_line_without_debug(tmp_path: Path, monkeypatch):
    import nnc.api

    def broken(text, path):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(nnc.api, "compile_spec", broken)
    result = invoke(["compile", str(GOOD)], tmp_path, monkeypatch)
    assert result.exit_code == 3
    assert "internal error: RuntimeError: simulated bug" in result.stderr
    assert "--debug" in result.stderr and "Traceback" not in result.stderr
    result = invoke(["compile", "--debug", str(GOOD)], tmp_path, monkeypatch)
    assert isinstance(result.exception, RuntimeError)


def test_debug_shows_spec_errors_as_exceptions(tmp_path: Path, monkeypatch):
    from nnc.errors import SpecError, SpecErrors

    result = invoke(["compile", "--debug", str(ERRORS / "name_undefined.nn")], tmp_path, monkeypatch)
    assert isinstance(result.exception, (SpecError, SpecErrors))


def test_error_count_is_capped(tmp_path: Path, monkeypatch):
    lines = ["model m", "input x : float[B, 2]"] + [f"h{i} = nosuch{i}(x)" for i in range(30)] + ["loss = l2(x)"]
    (tmp_path / "many.nn").write_text("\n".join(lines) + "\n")
    result = invoke(["compile", "many.nn"], tmp_path, monkeypatch)
    assert result.exit_code == 2
    assert result.stderr.count(": error: ") == 20
    assert "... and 10 more errors" in result.stderr
    assert result.stderr.rstrip().endswith("30 errors")
    # sorted by position
    lines_reported = [int(line.split(":")[1]) for line in result.stderr.splitlines() if ": error: " in line]
    assert lines_reported == sorted(lines_reported)


@pytest.mark.parametrize("name", ["syntax_unclosed_paren_next_line", "sem_many_errors", "syntax_binary",
                                  "syntax_invalid_utf8", "syntax_empty"])
def test_real_process(name: str, tmp_path: Path):
    """End to end through `python -m nnc`: exit status 2, a located message, no traceback."""
    out = tmp_path / "out.py"
    out.write_text("keep\n")
    proc = subprocess.run([sys.executable, "-m", "nnc", "compile", f"{name}.nn", "-o", str(out)],
                          cwd=ERRORS, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr == (ERRORS / f"{name}.stderr").read_text(encoding="utf-8")
    assert out.read_text() == "keep\n"


def test_oversized_file_is_refused_before_parsing(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(cli, "MAX_SPEC_BYTES", 1000)
    (tmp_path / "big.nn").write_text("model m\n" + "# padding\n" * 200)
    result = invoke(["compile", "big.nn"], tmp_path, monkeypatch)
    assert result.exit_code == 2
    assert result.stderr.startswith("big.nn:1:1: error: the spec is too large")


def test_output_through_a_symbolic_link_writes_the_file_it_names(tmp_path: Path, monkeypatch):
    """-o LINK: the file the link names gets the module and the link stays a link (a rename
    over the link used to replace it with a regular file and leave its target stale)."""
    real = tmp_path / "real.py"
    real.write_text("old\n")
    (tmp_path / "link.py").symlink_to("real.py")
    result = invoke(["compile", str(GOOD), "-o", "link.py"], tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "link.py").is_symlink()
    assert real.read_text().startswith('"""Model')
    assert _leftovers(tmp_path) == []


def test_output_to_a_device_or_pipe_is_written_not_replaced(tmp_path: Path, monkeypatch):
    """-o /dev/stdout, /dev/null or a named pipe: written into, never renamed over (as root a
    rename over /dev/stdout would replace the system's link with a regular file)."""
    (tmp_path / "null.py").symlink_to(os.devnull)
    result = invoke(["compile", str(GOOD), "-o", "null.py"], tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "null.py").is_symlink() and os.readlink(tmp_path / "null.py") == os.devnull
    fifo = tmp_path / "pipe.py"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    result = invoke(["compile", str(GOOD), "-o", "pipe.py"], tmp_path, monkeypatch)
    text = reader.communicate(timeout=30)[0]
    assert result.exit_code == 0, result.output
    assert fifo.is_fifo() and text.startswith(b'"""Model')
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("command", [
    ["train", str(GOOD), "--data", "xor"], ["eval", str(GOOD), "--weights", "w.npz", "--data", "xor"],
    ["graph", str(GOOD), "--values"],
    ["check", str(GOOD)], ["bench", str(GOOD)]])
def test_a_negative_seed_is_a_usage_error(tmp_path: Path, monkeypatch, command):
    """--seed -1 used to reach NumPy ('expected non-negative integer', and a traceback from graph)."""
    result = invoke([*command, "--seed", "-1"], tmp_path, monkeypatch)
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--seed': -1 is not in the range x>=0" in result.output
    assert "Traceback" not in result.output


_FULL = Path("/dev/full")


@pytest.mark.skipif(not _FULL.exists(), reason="no /dev/full on this system (a device whose writes fail: disk full)")
@pytest.mark.parametrize("command", [["compile", str(GOOD)], ["ir", str(GOOD)], ["--help"], ["summary", str(GOOD)],
                                     ["train", str(GOOD), "--data", "xor", "--epochs", "2", "--quiet"]])
def test_a_failed_write_to_stdout_is_one_line(command: list[str], tmp_path: Path):
    """Standard output on a full disk (sweep 17): a traceback ending in OSError (exit 1) from
    most commands, "internal error ... a bug in nnc" (exit 3) from train; now one line, exit 2."""
    with open(_FULL, "w") as full:
        proc = subprocess.run([sys.executable, "-m", "nnc", *command], cwd=tmp_path, stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1] == "nnc: error: cannot write to standard output: No space left on device"
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr


def test_closed_stdout_is_an_error_not_success(tmp_path: Path):
    """`nnc compile spec.nn >&-` wrote nothing and exited 0 (click.echo skips a missing stdout)."""
    proc = subprocess.run([sys.executable, "-m", "nnc", "compile", str(GOOD)], cwd=tmp_path, stderr=subprocess.PIPE,
                          text=True, timeout=60, preexec_fn=lambda: os.close(1))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == "nnc: error: cannot write to standard output: it is closed\n"


def test_a_broken_pipe_stays_quiet(tmp_path: Path):
    """`nnc compile spec.nn | head -1`: the reader leaving early is no error worth a message."""
    layers = "".join(f"h{k + 1} = tanh(dense(h{k}, 3))\n" for k in range(60))  # a module beyond a pipe's 64 KiB
    (tmp_path / "deep.nn").write_text(f"model deep\ninput h0 : float[B, 3]\n{layers}loss = sum(h60)\noutput h60\n")
    proc = subprocess.Popen([sys.executable, "-m", "nnc", "compile", "deep.nn"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.read(10) == b'"""Model \''
    proc.stdout.close()
    stderr = proc.communicate(timeout=60)[1].decode()
    assert "Traceback" not in stderr and "error" not in stderr, stderr


def test_train_into_a_broken_pipe_saves_the_weights_and_exits_quietly(tmp_path: Path):
    """`nnc train ... --out w.npz | (reader gone)`: an internal error (exit 3) and no weights,
    the summary echo failing before the save (sweep 18). Now the weights are saved first and
    the broken pipe is a quiet exit 1, as for the other commands."""
    proc = subprocess.Popen([sys.executable, "-m", "nnc", "train", str(GOOD), "--data", "xor", "--quiet", "--epochs",
                             "2", "--out", "w.npz"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is printed
    stderr = proc.communicate(timeout=120)[1].decode()
    assert proc.returncode == 1 and stderr == "", stderr
    assert (tmp_path / "w.npz").is_file()


def test_a_plot_format_matplotlib_cannot_write_is_one_line(tmp_path: Path):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib (pip install -e '.[plot]')")
    proc = subprocess.run([sys.executable, "-m", "nnc", "train", str(GOOD), "--data", "xor", "--quiet", "--epochs",
                           "2", "--plot", "c.txt"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "nnc train: error: --plot c.txt: matplotlib cannot draw it: Format 'txt' is not supported" in proc.stderr


@pytest.mark.parametrize("command", [["compile"], ["ir"], ["graph"], ["summary"], ["train", "--data", "xor"]])
def test_a_generated_module_given_as_a_spec_says_so(command, tmp_path, monkeypatch):
    """It was parsed as a spec: '1:1: unexpected character '"'; the language has no strings'
    (sweep 19). check, diff and bench take modules; these commands take the spec."""
    module = tmp_path / "xor.py"
    assert invoke(["compile", str(GOOD), "-o", str(module)], tmp_path, monkeypatch).exit_code == 0
    result = invoke([command[0], str(module), *command[1:]], tmp_path, monkeypatch)
    assert result.exit_code == 2, result.output
    assert "xor.py:1:1: error: this is a module nnc generated, not a spec" in result.output
    assert "help: give the .nn spec it came from" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("args, first_line", [
    (["train", str(GOOD), "--data", "xor", "--lr", "-1"],
     "nnc train: error: Invalid value for '--lr': -1.0 is not in the range x>=0."),
    (["compile"], "nnc compile: error: Missing argument 'SPEC'."),
    (["graph", str(GOOD), "--nosuch"], "nnc graph: error: No such option '--nosuch'."),
    (["nosuch"], "nnc: error: No such command 'nosuch'."),
    # click's type names leaked: "'abc' is not a valid float range." (sweep 20)
    (["train", str(GOOD), "--data", "xor", "--lr", "abc"], "nnc train: error: Invalid value for '--lr': 'abc' is not a valid number."),
    (["graph", str(GOOD), "--digits", "abc"], "nnc graph: error: Invalid value for '--digits': 'abc' is not a valid integer."),
])
def test_a_bad_option_reads_as_nnc_s_other_errors(args, first_line, tmp_path, monkeypatch):
    """click's "Usage: ... Try '...' for help. / Error: ..." stood beside nnc's own
    "nnc graph: error: ..." (sweep 19): now every such error is the command and the message,
    then where to look."""
    result = invoke(args, tmp_path, monkeypatch)
    assert result.exit_code == 2, result.output
    command = first_line.partition(": error:")[0]
    assert result.output.splitlines() == [first_line, f"  ('{command} --help' lists what it takes)"]


def test_bare_nnc_still_shows_the_help(tmp_path, monkeypatch):
    result = invoke([], tmp_path, monkeypatch)
    assert result.exit_code == 2 and result.output.startswith("Usage: nnc [OPTIONS] COMMAND")
    assert "error:" not in result.output


@pytest.mark.parametrize("command", ["check", "bench", "train"])
def test_arrays_too_large_for_memory_are_a_bad_argument(command, tmp_path, monkeypatch):
    """`--dim N=99999999999`: nnc check printed MemoryError's traceback (exit 1) and nnc bench
    called it a bug in nnc (exit 3; sweep 20). The allocation is made to fail here rather than
    tried: with overcommit a 1.5 TiB array may be granted and then fill the machine."""
    from nnc import bench
    from nnc.runtime import gradcheck, train

    def refuse(*args, **kwargs):
        raise MemoryError("Unable to allocate 1.46 TiB for an array with shape (99999999999, 2)")

    monkeypatch.setattr(gradcheck, "draw_inputs", refuse)
    monkeypatch.setattr(bench, "run", refuse)
    monkeypatch.setattr(train, "train", refuse)
    extra = {"check": ["--dim", "N=5"], "bench": ["--dim", "N=5", "--quiet"], "train": ["--data", "xor"]}[command]
    result = invoke([command, str(GOOD), *extra], tmp_path, monkeypatch)
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"nnc {command}: error: out of memory: Unable to allocate 1.46 TiB")
    assert "Traceback" not in result.output and "bug in nnc" not in result.output
