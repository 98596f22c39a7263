import json

import pytest

from amnesiac.cli import main


def test_no_subcommand_prints_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "ledger" in out and "typical session" in out


def _all_commands() -> list[tuple[str, ...]]:
    """Every command and subcommand the parser knows, found by walking it (so a new one is covered too)."""
    import argparse

    from amnesiac.cli import build_parser

    found: list[tuple[str, ...]] = []

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found.append(path + (name,))
                    walk(sub, path + (name,))

    walk(build_parser(), ())
    return found


def test_the_walk_finds_the_nested_commands():
    cmds = _all_commands()
    assert ("ledger", "verify") in cmds and ("attack", "mia") in cmds and ("demo",) in cmds and len(cmds) >= 16


@pytest.mark.parametrize("cmd", _all_commands(), ids=" ".join)
def test_every_command_and_subcommand_has_help_with_examples(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*cmd, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "amnesiac " + " ".join(cmd) in out.split("examples:", 1)[1], out[-800:]


def test_unknown_model_gives_suggestion_and_exit_2(tmp_path, capsys):
    code = main(["train", "--model", "small_cnn", "--out", str(tmp_path / "r"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown model 'small_cnn'" in err and "Did you mean 'small-cnn'" in err
    assert not (tmp_path / "r").exists()


def test_train_then_ledger_info_and_verify(tmp_path, capsys):
    run = str(tmp_path / "r")
    assert main(["train", "--epochs", "1", "--out", run, "--no-progress", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["record"] == "all" and summary["history"][0]["step"] == 23
    assert main(["ledger", "info", run, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["steps"] == 23 and info["recorded_steps"] == 23 and info["training_complete"]
    assert main(["ledger", "verify", run]) == 0
    assert "all good" in capsys.readouterr().out


def test_datasets_and_models_list(capsys):
    assert main(["datasets", "--json"]) == 0
    names = [d["name"] for d in json.loads(capsys.readouterr().out)]
    assert {"digits", "mnist", "fashion-mnist", "cifar10", "cifar100"} <= set(names)
    assert main(["models"]) == 0
    assert "resnet18-cifar" in capsys.readouterr().out


def test_python_dash_m(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "amnesiac", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("amnesiac ")


def test_help_and_every_subcommands_help_answer_without_importing_torch():
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from amnesiac.cli import main\n"
        "nested = [['ledger', a, '--help'] for a in ('info', 'verify', 'recover', 'estimate')]\n"
        "nested += [['attack', a, '--help'] for a in ('mia', 'inversion')]\n"
        "for argv in (['--help'], *[[c, '--help'] for c in sys.argv[1:]], *nested):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:3]\n"
    )
    commands = ["demo", "train", "forget", "receipts", "methods", "attack", "reproduce", "ledger", "datasets", "models"]
    proc = subprocess.run([sys.executable, "-c", script, *commands], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("examples:") >= len(commands) + 6  # every subcommand and every ledger/attack action
