"""Shards: fixed groups of training records, and batching that never mixes two groups in one step.

With shard-confined batching every optimizer step draws its batch from one shard, so all steps that
ever saw a record belong to its shard, and a shard ledger (:mod:`amnesiac.ledger`) keeps one summed
update per shard instead of one per step. Each epoch visits the shards in a new random order and
reshuffles the records inside each shard; a shard's records are consecutive batches (the last one of a
shard may be smaller).

>>> import numpy as np
>>> shards = make_shards(np.arange(10), shard_size=4, seed=0)
>>> shards.num_shards, sorted(len(m) for m in shards.members().values())
(3, [2, 4, 4])
>>> order = shard_batch_order(shards, np.arange(10), batch_size=3, seed=0, epoch=0)
>>> all(len(set(shards.shard_of(np.asarray(b)))) == 1 for b in order)   # every batch from one shard
True
>>> sorted(np.concatenate(order).tolist()) == list(range(10))
True
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, RequestError


class ShardMap:
    """Which shard each sample id belongs to. Shards are numbered from 1.

    Args:
        ids: sample ids (unique).
        shard: the shard number of each id (>= 1), aligned with ``ids``.
    """

    def __init__(self, ids: np.ndarray | Sequence[int], shard: np.ndarray | Sequence[int]) -> None:
        ids_a = np.asarray(ids, dtype=np.int64).reshape(-1)
        sh = np.asarray(shard, dtype=np.int64).reshape(-1)
        if ids_a.shape != sh.shape:
            raise ConfigError(f"a shard map needs one shard per id: got {ids_a.size} ids and {sh.size} shard numbers")
        order = np.argsort(ids_a, kind="stable")
        self.ids, self.shard = ids_a[order], sh[order]
        if self.ids.size and (np.diff(self.ids) == 0).any():
            dup = self.ids[1:][np.diff(self.ids) == 0][:5].tolist()
            raise ConfigError(f"a shard map lists sample id(s) {dup} more than once; each record belongs to one shard")
        if self.shard.size and self.shard.min() < 1:
            raise ConfigError(f"shard numbers start at 1, got {int(self.shard.min())}")

    @property
    def num_shards(self) -> int:
        """How many distinct shards hold at least one record."""
        return int(np.unique(self.shard).size)

    def __len__(self) -> int:
        return int(self.ids.size)

    def shard_of(self, ids: np.ndarray | Sequence[int]) -> np.ndarray:
        """The shard of each id; an id the map does not know raises :class:`ConfigError`."""
        q = np.asarray(ids, dtype=np.int64).reshape(-1)
        if self.ids.size == 0:
            raise ConfigError(f"sample id(s) {q[:5].tolist()} are in no shard (the shard map is empty)")
        pos = np.minimum(np.searchsorted(self.ids, q), self.ids.size - 1)
        known = self.ids[pos] == q
        if not known.all():
            raise ConfigError(f"sample id(s) {q[~known][:5].tolist()} are in no shard of this shard map")
        return self.shard[pos]

    def members(self) -> dict[int, np.ndarray]:
        """Shard number -> its sample ids (sorted)."""
        out: dict[int, np.ndarray] = {}
        order = np.argsort(self.shard, kind="stable")
        sh, ids = self.shard[order], self.ids[order]
        bounds = np.flatnonzero(np.diff(sh)) + 1
        for chunk_ids, chunk_sh in zip(np.split(ids, bounds), np.split(sh, bounds)):
            if chunk_ids.size:
                out[int(chunk_sh[0])] = chunk_ids
        return out

    def restricted(self, ids: np.ndarray | Sequence[int]) -> ShardMap:
        """The same assignment for a subset of ids (all must be known)."""
        q = np.unique(np.asarray(ids, dtype=np.int64))
        return ShardMap(q, self.shard_of(q))

    def to_dict(self) -> dict[str, Any]:
        return {"ids": self.ids.tolist(), "shard": self.shard.tolist()}

    def __repr__(self) -> str:
        return f"ShardMap({len(self)} records in {self.num_shards} shards)"


def make_shards(ids: np.ndarray | Sequence[int], *, shard_size: int | None = None, num_shards: int | None = None,
                subjects: Mapping[str, Sequence[int]] | None = None, seed: int = 0) -> ShardMap:
    """Partition ``ids`` into shards at random (seeded): ``shard_size`` records each, or ``num_shards``
    shards of near-equal size (exactly one of them).

    With ``subjects`` (subject -> its record ids), all records of one subject share a shard: subjects are
    packed, in random order, into shards of up to ``shard_size`` records (a subject with more records than
    that gets a shard of its own), and the records of no subject fill shards of their own. Ids the subject
    map names but ``ids`` lacks (records excluded from this training set) are ignored.
    """
    ids_a = np.unique(np.asarray(ids, dtype=np.int64))
    if (shard_size is None) == (num_shards is None):
        raise ConfigError("give exactly one of shard_size (records per shard) and num_shards")
    if ids_a.size == 0:
        raise ConfigError("no records to shard")
    if num_shards is not None:
        if not isinstance(num_shards, int) or isinstance(num_shards, bool) or not 1 <= num_shards <= ids_a.size:
            raise ConfigError(f"num_shards must be an integer from 1 to the number of records ({ids_a.size}), got {num_shards!r}")
        shard_size = -(-ids_a.size // num_shards)
    if not isinstance(shard_size, int) or isinstance(shard_size, bool) or shard_size < 1:
        raise ConfigError(f"shard_size must be a positive integer, got {shard_size!r}")
    if shard_size > ids_a.size:
        raise ConfigError(f"shard_size {shard_size} is more than the {ids_a.size} records to shard; a shard holds at "
                          f"most every record (shard_size <= {ids_a.size})")
    g = torch.Generator().manual_seed(int(seed) * 7_919 + 17)
    groups: list[np.ndarray] = []
    rest = ids_a
    if subjects:
        rest, groups = _subject_groups(ids_a, subjects, shard_size, g)
    if rest.size:
        perm = rest[torch.randperm(rest.size, generator=g).numpy()]
        if num_shards is not None and not subjects:
            groups += [c for c in np.array_split(perm, num_shards) if c.size]
        else:
            groups += [perm[i : i + shard_size] for i in range(0, perm.size, shard_size)]
    shard = np.concatenate([np.full(gr.size, k + 1, dtype=np.int64) for k, gr in enumerate(groups)])
    return ShardMap(np.concatenate(groups), shard)


def _subject_groups(ids: np.ndarray, subjects: Mapping[str, Sequence[int]], shard_size: int,
                    g: torch.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """Pack subjects into shards; returns the ids of no subject and the subject shards."""
    names = sorted(subjects)
    owned: dict[int, str] = {}
    for name in names:
        for i in subjects[name]:
            i = int(i)
            if i in owned and owned[i] != name:
                raise ConfigError(f"record {i} belongs to two subjects ({owned[i]!r} and {name!r}); "
                                  "a record can be in one shard only")
            owned[i] = name
    held = set(ids.tolist())
    owned = {i: name for i, name in owned.items() if i in held}  # records the training data lacks are ignored
    groups: list[np.ndarray] = []
    current: list[int] = []
    for k in torch.randperm(len(names), generator=g).tolist():
        recs = sorted({int(i) for i in subjects[names[k]] if int(i) in owned})
        if not recs:
            continue
        if current and len(current) + len(recs) > shard_size:
            groups.append(np.asarray(current, dtype=np.int64))
            current = []
        current += recs
    if current:
        groups.append(np.asarray(current, dtype=np.int64))
    rest = ids[~np.isin(ids, np.fromiter(owned, dtype=np.int64, count=len(owned)))]
    return rest, groups


def read_subject_map(path: str | os.PathLike[str]) -> dict[str, list[int]]:
    """Read a subject -> ids mapping: a JSON object ``{"alice": [1, 2]}`` or a CSV of ``subject,id`` rows.

    Ids must be integers: ``"12"``, ``1.9`` or ``true`` are refused, never coerced.
    """
    from ..utils import read_text_file, strict_int_list

    p = Path(path)
    try:
        text = read_text_file(p, "subject map")
    except ConfigError as err:
        raise RequestError(str(err)) from None
    out: dict[str, list[int]] = {}
    if text.lstrip().startswith("{"):
        try:
            raw = json.loads(text)
        except ValueError:
            raise RequestError(f"{p}: expected a JSON object mapping each subject to a list of integer ids") from None
        for subject, ids in raw.items():
            try:
                out[str(subject)] = strict_int_list(ids, f"{p}, subject {subject!r}")
            except ConfigError as err:
                raise RequestError(str(err)) from None
        return out
    for n, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or row[0].startswith("#") or (n == 1 and row[0].strip().lower() == "subject"):
            continue
        if len(row) != 2:
            raise RequestError(f"{p}, line {n}: expected two columns 'subject,id', got {row!r}")
        token = row[1].strip()
        if not token.isdigit() or int(token) > 2**63 - 1:
            raise RequestError(f"{p}, line {n}: the id {row[1]!r} is not an integer from 0 to 2**63-1")
        out.setdefault(row[0].strip(), []).append(int(token))
    return out


def shard_batch_order(shards: ShardMap, ids: np.ndarray, *, batch_size: int, seed: int, epoch: int,
                      micro_batches: int = 1) -> list[np.ndarray]:
    """The batches of one epoch as positions into ``ids``: shards in a random order, records shuffled inside
    each shard, consecutive batches of up to ``batch_size`` from one shard. Depends only on (seed, epoch).

    With ``micro_batches`` k > 1 (gradient accumulation: k batches per optimizer step) every shard gives a
    multiple of k batches, its records spread evenly over them, so no optimizer step mixes two shards."""
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    ids = np.asarray(ids, dtype=np.int64)
    of = shards.shard_of(ids)
    _check_micro_batches(np.unique(of, return_counts=True)[1], micro_batches)
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch) * 7 + 3) % (2**63))
    order = np.argsort(of, kind="stable")
    bounds = np.flatnonzero(np.diff(of[order])) + 1
    groups = np.split(order, bounds)
    out: list[np.ndarray] = []
    for k in torch.randperm(len(groups), generator=g).tolist():
        grp = groups[k][torch.randperm(groups[k].size, generator=g).numpy()]
        if micro_batches == 1:
            out += [grp[i : i + batch_size] for i in range(0, grp.size, batch_size)]
        else:
            out += np.array_split(grp, _shard_batches(grp.size, batch_size, micro_batches))
    return out


def _shard_batches(n: int, batch_size: int, micro_batches: int) -> int:
    """How many batches a shard of ``n`` records gives: enough for ``batch_size``, rounded up to a multiple
    of ``micro_batches``."""
    return -(-n // (batch_size * micro_batches)) * micro_batches


def _check_micro_batches(counts: np.ndarray, micro_batches: int) -> None:
    """``counts``: the records of each shard."""
    if not isinstance(micro_batches, int) or isinstance(micro_batches, bool) or micro_batches < 1:
        raise ConfigError(f"micro_batches (batches per optimizer step) must be a positive integer, got {micro_batches!r}")
    if micro_batches > 1:
        if counts.min() < micro_batches:
            raise ConfigError(f"a shard of {int(counts.min())} record(s) cannot fill {micro_batches} accumulated "
                              f"batches of one optimizer step: use shards of at least {micro_batches} records, or "
                              "fewer gradient accumulation steps")


class ShardBatchSampler(torch.utils.data.Sampler[list[int]]):
    """A ``batch_sampler`` for your own ``DataLoader``: batches confined to one shard each.

    ``ids[i]`` is the sample id of dataset index ``i``. Call :meth:`set_epoch` at the start of each epoch
    (as with ``DistributedSampler``) for a new shard order and new batches inside each shard.

    >>> import numpy as np
    >>> sampler = ShardBatchSampler(make_shards(np.arange(8), shard_size=4), np.arange(8), batch_size=2)
    >>> len(sampler), len(list(sampler))
    (4, 4)
    """

    def __init__(self, shards: ShardMap, ids: np.ndarray | Sequence[int], *, batch_size: int, seed: int = 0,
                 micro_batches: int = 1) -> None:
        self.shards = shards
        self.ids = np.asarray(ids, dtype=np.int64)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.micro_batches = micro_batches
        # every record must have a shard, and every shard fill the micro-batches of one step
        _check_micro_batches(np.unique(shards.shard_of(self.ids), return_counts=True)[1], micro_batches)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        for b in shard_batch_order(self.shards, self.ids, batch_size=self.batch_size, seed=self.seed, epoch=self.epoch,
                                   micro_batches=self.micro_batches):
            yield b.tolist()

    def __len__(self) -> int:
        return num_shard_batches(self.shards, self.ids, self.batch_size, micro_batches=self.micro_batches)


def num_shard_batches(shards: ShardMap, ids: np.ndarray, batch_size: int, *, micro_batches: int = 1) -> int:
    """Batches per epoch with shard-confined batching (optimizer steps, times ``micro_batches``)."""
    _, counts = np.unique(shards.shard_of(np.asarray(ids, dtype=np.int64)), return_counts=True)
    return int(sum(_shard_batches(int(c), batch_size, micro_batches) for c in counts))
