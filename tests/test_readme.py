"""The README runs as written: its command-line session in order, and its Python snippets, twice.

Nothing is shortened: the commands are the README's own lines, run in a fresh folder with the installed
`amnesiac`; a line that fails stops the test with its output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start: end if end != -1 else len(text)]


def _blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["AMNESIAC_PROGRESS_INTERVAL"] = "3600"
    return env


@pytest.mark.slow  # about two minutes: every line of the README's session
def test_the_command_line_session_runs_in_order(tmp_path):
    session = _blocks(_section("The command line"), "bash")[0]
    lines = [line.split("  #")[0].strip() for line in session.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    assert len(lines) >= 10 and lines[0].startswith("amnesiac train")
    for line in lines:
        done = subprocess.run(line, shell=True, cwd=tmp_path, env=_env(), capture_output=True, text=True)
        assert done.returncode == 0, f"README line failed: {line}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    # the session did what its comments say
    assert (tmp_path / "runs/digits-retrain/model.safetensors").is_file()
    assert (tmp_path / "attacks").is_dir()


def test_the_long_commands_block_names_only_real_commands(tmp_path):
    """The reproduction block is not run (it takes an hour), but every line must parse: --help on each."""
    block = _blocks(_section("The command line"), "bash")[1]
    for line in (ln.split("  #")[0].strip() for ln in block.splitlines()):
        if not line:
            continue
        args = line.split()[1:]
        command = args[:2] if args[0] in ("ledger", "attack") else args[:1]  # the commands with subcommands
        done = subprocess.run([sys.executable, "-m", "amnesiac", *command, "--help"], capture_output=True, text=True)
        assert done.returncode == 0, line
        options = done.stdout.split("examples:")[0]  # the option list, not the examples that may mention flags
        for flag in (a.split("=")[0] for a in args if a.startswith("--")):
            assert flag in options, f"{line}: {flag} is not an option of `amnesiac {' '.join(command)}`"


def test_the_python_snippets_run_as_written_twice(tmp_path, monkeypatch):
    code = "\n".join(_blocks(_section("The Python API"), "python"))
    assert "forget_records" in code and "train_run" in code
    monkeypatch.chdir(tmp_path)
    for _ in range(2):  # a second run must work too (no "already holds a ledger")
        namespace: dict = {"__name__": "__readme__"}
        exec(compile(code, str(README), "exec"), namespace)
        assert namespace["done"].receipt["steps_reverted"] and namespace["result"].receipt["n_steps_reverted"]


def test_the_shard_ledger_block_runs_in_order(tmp_path):
    block = _blocks(_section("The command line"), "bash")[2]
    lines = [ln.split("  #")[0].strip() for ln in block.splitlines() if ln.strip()]
    assert any("--batching shards" in ln for ln in lines)
    outputs = []
    for line in lines:
        done = subprocess.run(line, shell=True, cwd=tmp_path, env=_env(), capture_output=True, text=True)
        assert done.returncode == 0, f"README line failed: {line}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        outputs.append(done.stdout)
    # the comments' numbers are the command's own
    assert "2.1 GiB" in outputs[0] and "(94 times more)" in outputs[0]
    assert "shard sums subtracted 1;" in outputs[-1]
