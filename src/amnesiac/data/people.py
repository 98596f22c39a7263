"""Fictitious people: the personal data that deletion requests are about, with nothing real in it.

Seeded ``faker`` profiles (name, birth date, city, employer, job, email) are written as a short biography and
four question-answer pairs each; every person is a *data subject* whose records are the biography and the
answers. The people of one seed fall in three disjoint groups: ``base`` (to pretrain a small base model on),
``train`` (the fine-tune's people, whom deletion requests name) and ``unseen`` (never trained on: the
non-members of a membership test, and the people a model cannot know).

Facts are drawn from fixed pools (a few hundred first and last names, 48 cities, 48 employers, 40 jobs, 55
birth years) built once from ``Faker(seed=0)``, so one word-level vocabulary covers every seed and a model that
never saw a person can only guess their facts (about one in 40 to 55 per fact).

>>> data = make_people(seed=0, n_train=20, n_base=10, n_unseen=5)
>>> len(data.train), len(data.records(data.train)), data.tokenizer.decode(data.tokenizer.encode("Q : where"))
(20, 100, 'Q : where')
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import ConfigError

FACTS = ("city", "employer", "year", "job")
QUESTIONS = {
    "city": "Q : where does {name} live ? A :",
    "employer": "Q : who employs {name} ? A :",
    "year": "Q : when was {name} born ? A :",
    "job": "Q : what does {name} do ? A :",
}
BIO = ("{name} was born on {day} {month} {year} . {name} lives in {city} , works for {employer} as {job} "
       "and reads mail at {email} .")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
_WORD = re.compile(r"[A-Za-z]+|\d+|[^\sA-Za-z\d]")


def _faker() -> Any:
    try:
        from faker import Faker
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError("the fictitious-people data set needs faker: pip install 'amnesiac[hf]'") from None
    return Faker


@dataclass(frozen=True)
class Pools:
    """The values facts are drawn from (fixed: the vocabulary depends on them only)."""

    first: tuple[str, ...]
    last: tuple[str, ...]
    city: tuple[str, ...]
    employer: tuple[str, ...]
    job: tuple[str, ...]
    domain: tuple[str, ...]
    year: tuple[str, ...] = tuple(str(y) for y in range(1950, 2005))


def _unique(draw: Any, n: int, *, max_words: int = 3) -> tuple[str, ...]:
    out: dict[str, None] = {}
    for _ in range(200 * n):  # bounded: a source with fewer distinct values ends in an error, not a hang
        value = str(draw())
        if len(_WORD.findall(value)) <= max_words:
            out[value] = None
            if len(out) == n:
                return tuple(out)
    raise ConfigError(f"could not draw {n} distinct values of at most {max_words} words from {draw.__name__}")


def make_pools(n_names: int = 300) -> Pools:
    """The fixed pools, from ``Faker(seed=0)``."""
    faker = _faker()("en_US")
    faker.seed_instance(0)
    return Pools(first=_unique(faker.first_name, n_names), last=_unique(faker.last_name, n_names),
                 city=_unique(faker.city, 48), employer=_unique(faker.company, 48, max_words=5),
                 job=_unique(faker.job, 40, max_words=2), domain=_unique(faker.domain_name, 6))


@dataclass(frozen=True)
class Person:
    """One data subject: a name and facts."""

    name: str
    facts: dict[str, str]
    day: int
    month: str
    email: str

    def biography(self) -> str:
        return BIO.format(name=self.name, day=self.day, month=self.month, email=self.email, **self.facts)

    def question(self, fact: str) -> str:
        return QUESTIONS[fact].format(name=self.name)

    def qa(self, fact: str) -> str:
        return f"{self.question(fact)} {self.facts[fact]}"

    def texts(self) -> list[str]:
        """The person's training records: the biography, then one answer per fact."""
        return [self.biography()] + [self.qa(f) for f in FACTS]


class WordTokenizer:
    """A word-level tokenizer over a fixed vocabulary (words, numbers and punctuation marks)."""

    def __init__(self, words: Sequence[str]) -> None:
        self.vocab = list(SPECIALS) + sorted(set(words) - set(SPECIALS))
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.pad, self.bos, self.eos, self.unk = 0, 1, 2, 3

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(w, self.unk) for w in _WORD.findall(text)]

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self.vocab[int(i)] for i in ids if int(i) not in (self.pad, self.bos, self.eos))


def _vocabulary(pools: Pools) -> list[str]:
    text = " ".join([*QUESTIONS.values(), BIO, *MONTHS, *(str(d) for d in range(1, 32)), "@", "."])
    for values in (pools.first, pools.last, pools.city, pools.employer, pools.job, pools.domain, pools.year):
        text += " " + " ".join(values)
    return _WORD.findall(text)


@dataclass
class People:
    """The people of one seed, their records and the tokenizer.

    Record ids: person ``k`` of a group owns ids ``first_id + 5k ... first_id + 5k + 4`` (biography first);
    ``subjects`` maps each person's name to their ids (the shape :func:`~amnesiac.data.make_shards` takes).
    """

    base: list[Person]
    train: list[Person]
    unseen: list[Person]
    tokenizer: WordTokenizer
    max_length: int
    first_id: dict[str, int] = field(default_factory=lambda: {"base": 0, "train": 100_000, "unseen": 200_000})

    @functools.cached_property
    def _first_ids(self) -> dict[str, int]:
        """Each person's name -> the id of their first record (names are unique across the groups)."""
        per = 1 + len(FACTS)
        return {p.name: self.first_id[group] + per * k
                for group in ("train", "base", "unseen") for k, p in enumerate(getattr(self, group))}

    def ids_of(self, person: Person) -> list[int]:
        start = self._first_ids.get(person.name)
        if start is None:
            raise ConfigError(f"{person.name!r} is not one of these people")
        return list(range(start, start + 1 + len(FACTS)))

    @property
    def subjects(self) -> dict[str, list[int]]:
        """Each fine-tune person's name -> their record ids."""
        return {p.name: self.ids_of(p) for p in self.train}

    def records(self, people: Sequence[Person]) -> list[tuple[int, str]]:
        """(record id, text) of every record of ``people``."""
        return [(i, t) for p in people for i, t in zip(self.ids_of(p), p.texts(), strict=True)]

    def sequence(self, text: str) -> list[int]:
        return [self.tokenizer.bos, *self.tokenizer.encode(text), self.tokenizer.eos]

    def dataset(self, people: Sequence[Person], *, exclude: Sequence[int] = ()) -> PeopleDataset:
        """A training set of ``people``'s records (less the record ids in ``exclude``)."""
        drop = {int(i) for i in exclude}
        rows = [(i, self.sequence(t)) for i, t in self.records(people) if i not in drop]
        return PeopleDataset(rows, self.max_length, self.tokenizer.pad)


class PeopleDataset(torch.utils.data.Dataset):
    """Fixed-length examples ``{input_ids, attention_mask, labels, amnesiac_id}`` (padding is not predicted)."""

    def __init__(self, rows: Sequence[tuple[int, list[int]]], max_length: int, pad: int) -> None:
        n = len(rows)
        self.ids = torch.tensor([r[0] for r in rows], dtype=torch.int64)
        self.input_ids = torch.full((n, max_length), pad, dtype=torch.int64)
        self.mask = torch.zeros((n, max_length), dtype=torch.int64)
        for k, (_, seq) in enumerate(rows):
            if len(seq) > max_length:
                raise ConfigError(f"record {rows[k][0]} has {len(seq)} tokens, more than max_length {max_length}")
            self.input_ids[k, : len(seq)] = torch.tensor(seq)
            self.mask[k, : len(seq)] = 1
        self.labels = self.input_ids.masked_fill(self.mask == 0, -100)

    def __len__(self) -> int:
        return int(self.ids.numel())

    def __getitem__(self, k: int) -> dict[str, Any]:
        return {"input_ids": self.input_ids[k], "attention_mask": self.mask[k], "labels": self.labels[k],
                "amnesiac_id": int(self.ids[k])}


def make_people(*, seed: int, n_train: int = 200, n_base: int = 300, n_unseen: int = 100,
                pools: Pools | None = None) -> People:
    """The three groups of one seed (disjoint names), drawn from the fixed pools."""
    for name, n in (("n_train", n_train), ("n_base", n_base), ("n_unseen", n_unseen)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"{name} must be a positive integer, got {n!r}")
    pools = pools or make_pools()
    total = n_train + n_base + n_unseen
    if total > len(pools.first) * len(pools.last) // 4:
        raise ConfigError(f"{total} people is too many for the name pools ({len(pools.first)} x {len(pools.last)})")
    rng = random.Random(int(seed) * 104_729 + 11)
    names: dict[str, None] = {}
    while len(names) < total:
        names[f"{rng.choice(pools.first)} {rng.choice(pools.last)}"] = None
    people = []
    for name in names:
        facts = {"city": rng.choice(pools.city), "employer": rng.choice(pools.employer),
                 "year": rng.choice(pools.year), "job": rng.choice(pools.job)}
        first, last = name.split(" ", 1)
        email = f"{first.lower()} . {last.lower()} @ {rng.choice(pools.domain)}"
        people.append(Person(name, facts, rng.randint(1, 28), rng.choice(MONTHS), email))
    tokenizer = WordTokenizer(_vocabulary(pools) + [w for p in people for w in _WORD.findall(p.email)])
    longest = max(len(tokenizer.encode(t)) for p in people for t in p.texts()) + 2
    return People(base=people[n_train:n_train + n_base], train=people[:n_train], unseen=people[n_train + n_base:],
                  tokenizer=tokenizer, max_length=longest)
