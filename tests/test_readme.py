"""Every ```python block of README.md runs as written (issue 6 item 5).

Each block runs in a fresh interpreter (so a fresh namespace), in README order, once per
engine (MOAI_FLOW_FAST_NO_EXTENSIONS selects it), with a timeout that kills a block that
hangs. Tracebacks point at README.md line numbers. Nothing is skipped: a block that
cannot run as written is a README bug. The blocks import the package this suite imported
(an installed build or the source tree), never a source tree that merely lies nearby."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import moai_flow_fast

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# The folder holding the package under test: first on the blocks' path.
PKG_ROOT = Path(moai_flow_fast.__file__).resolve().parent.parent
TIMEOUT_S = 60

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)

# Runs one block: checks the engine, then executes the code as README.md's own lines.
_RUNNER = """
import sys
import moai_flow_fast
want = sys.argv[3] == "compiled"
assert moai_flow_fast.COMPILED is want, f"wanted the {sys.argv[3]} engine"
code = "\\n" * (int(sys.argv[2]) - 1) + sys.stdin.read()
namespace = {"__name__": "__main__", "__builtins__": __builtins__}
exec(compile(code, sys.argv[1], "exec"), namespace)
"""


def fenced_blocks(text):
    """(language, first code line number, code) of every fenced block."""
    out = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start(2)) + 1
        out.append((match.group(1).strip().lower(), line, match.group(2)))
    return out


def python_blocks(text):
    return [(line, code) for lang, line, code in fenced_blocks(text)
            if lang.split()[:1] == ["python"]]


TEXT = README.read_text(encoding="utf-8")
BLOCKS = python_blocks(TEXT)


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


def test_no_python_block_escapes_the_test():
    """A block marked py, python3, pycon... would not be run: use ```python."""
    for lang, line, _ in fenced_blocks(TEXT):
        word = lang.split()[:1]
        assert not word or not word[0].startswith("py") or word[0] == "python", \
            f"README.md line {line}: fence language {lang!r}"


def run_block(code, line, engine, cwd, path=README):
    env = dict(os.environ)
    env["MOAI_FLOW_FAST_NO_EXTENSIONS"] = "1" if engine == "pure" else "0"
    env["PYTHONPATH"] = os.pathsep.join([str(PKG_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("PYTHONSTARTUP", None)
    try:
        return subprocess.run(
            [sys.executable, "-c", _RUNNER, str(path), str(line), engine],
            input=code, capture_output=True, text=True, env=env, cwd=cwd, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"README.md block at line {line} ran longer than {TIMEOUT_S} s "
                    f"(killed):\n{exc.stderr or ''}")


@pytest.mark.parametrize(("line", "code"), BLOCKS, ids=[f"line{line}" for line, _ in BLOCKS])
def test_readme_block_runs(engine, line, code, tmp_path):
    proc = run_block(code, line, engine, tmp_path)
    assert proc.returncode == 0, (
        f"README.md block at line {line} failed ({engine} engine):\n"
        f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
