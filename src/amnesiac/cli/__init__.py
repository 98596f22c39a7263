"""The ``amnesiac`` command. One module per subcommand; each has ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import AmnesiacError, PendingChangeError, TrainingFailedError
from . import (
    attack_cmd,
    datasets_cmd,
    demo_cmd,
    forget_cmd,
    ledger_cmd,
    methods_cmd,
    models_cmd,
    receipts_cmd,
    reproduce_cmd,
    serve_cmd,
    train_cmd,
)
from .common import in_flags

COMMANDS = [demo_cmd, train_cmd, forget_cmd, receipts_cmd, serve_cmd, methods_cmd, attack_cmd, reproduce_cmd, ledger_cmd, datasets_cmd, models_cmd]

DESCRIPTION = """\
Delete training records from a trained PyTorch model (Amnesiac Machine Learning, AAAI 2021)
and measure how well they were forgotten.

typical session:
  amnesiac demo --out runs/demo          # the whole idea in a minute, on the bundled digits
  amnesiac train --dataset digits --model small-cnn --epochs 5 --out runs/digits
  amnesiac forget runs/digits --ids 17,42 --dry-run
  amnesiac forget runs/digits --ids 17,42
  amnesiac receipts runs/digits
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amnesiac", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"amnesiac {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 failure reported by a command or a run busy with / awaiting
    recovery from a change, 2 bad input or a refused request)."""
    parser = build_parser()
    args = parser.parse_args(receipts_cmd.with_default_action(list(sys.argv[1:] if argv is None else argv)))
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a reader that closed the pipe is met here, not at exit
        return code
    except (PendingChangeError, TrainingFailedError) as err:  # not bad input: busy, awaiting recovery, or failed
        print(f"amnesiac {args.command}: {in_flags(str(err))}", file=sys.stderr)
        return 1
    except AmnesiacError as err:
        print(f"amnesiac {args.command}: error: {in_flags(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `amnesiac receipts --json | head`: the reader left; end quietly
        _quiet_stdout()
        return 141


def _quiet_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so Python's exit-time flush raises nothing."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
