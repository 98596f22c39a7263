"""Helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any


def add_subparser(sub: Any, name: str, *, help: str, description: str, examples: str) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=help,
        description=description,
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain aligned text table."""
    cells = [list(map(str, header))] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _jsonable(obj: Any) -> Any:
    """What json cannot write itself: a mapping (a typed Receipt) as its object, anything else as text."""
    return dict(obj) if isinstance(obj, Mapping) else str(obj)


def emit_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=True, default=_jsonable)
    sys.stdout.write("\n")


# library parameters and the flags this command line spells them with: library errors name parameters
# (``out='runs/x'``, ``force=True``), and the CLI shows its own flags instead
PARAMETER_FLAGS = {
    "method": "--method", "force": "--force", "keep_artifacts": "--keep-artifacts-for-research",
    "dry_run": "--dry-run", "nproc": "--nproc", "oversubscribe": "--oversubscribe", "out": "--out",
    "record": "--record", "data_dir": "--data-dir", "download": "--download", "ids": "--ids", "class_": "--class",
    "subjects": "--subjects", "subject_map": "--subjects-file", "overwrite": "--overwrite", "resume": "--resume",
    "shard_size": "--shard-size", "num_shards": "--shards", "ledger_dtype": "--ledger-dtype",
    "watch_ids": "--watch-ids", "watch_class": "--watch-class", "seeds": "--seeds",
}
_PARAMETER = re.compile(r"(?<![\w.])(?<!\w\()(" + "|".join(PARAMETER_FLAGS) + r")=('([^']*)'|True\b|(\.\.\.|[\w./<>~-]+))")


def in_flags(message: str) -> str:
    """A library message with its parameters spelled as this command line's flags.

    >>> in_flags("Use method='relabel', or force=True to subtract the updates anyway")
    'Use --method relabel, or --force to subtract the updates anyway'
    >>> print(in_flags("a new directory (out=NEWRUN); data_dir=DIR, or download=True; make_shards(subjects=...)"))
    a new directory (--out NEWRUN); --data-dir DIR, or --download; make_shards(subjects=...)
    """
    def flag(m: re.Match[str]) -> str:
        value = m.group(3) if m.group(3) is not None else m.group(4)
        return PARAMETER_FLAGS[m.group(1)] + ("" if value is None else f" {value}")

    return _PARAMETER.sub(flag, message)
