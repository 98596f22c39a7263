"""The fictitious people (amnesiac.data.people) and the language-model measures (amnesiac.experiments.people):
seeded and disjoint groups, one subject per person, the exact-match measure equal to greedy decoding."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("faker")
transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

from amnesiac.data.people import FACTS, make_people  # noqa: E402
from amnesiac.errors import ConfigError  # noqa: E402
from amnesiac.experiments.people import base_config, fact_hits, person_shards  # noqa: E402


def test_people_are_seeded_disjoint_and_each_owns_five_records():
    a, b = make_people(seed=3, n_train=30, n_base=20, n_unseen=10), make_people(seed=3, n_train=30, n_base=20, n_unseen=10)
    assert [p.name for p in a.train] == [p.name for p in b.train] and a.train[0].facts == b.train[0].facts
    other = make_people(seed=4, n_train=30, n_base=20, n_unseen=10)
    assert [p.name for p in other.train] != [p.name for p in a.train]
    groups = [{p.name for p in g} for g in (a.train, a.base, a.unseen)]
    assert sum(map(len, groups)) == 60 and not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    ids = [i for ids in a.subjects.values() for i in ids]
    assert len(ids) == len(set(ids)) == 30 * (1 + len(FACTS))
    records = a.records(a.train[:1])
    assert [i for i, _ in records] == a.subjects[a.train[0].name]
    assert a.train[0].facts["city"] in records[1][1] and records[0][1].startswith(a.train[0].name)
    for text in (t for p in a.train + a.unseen for t in p.texts()):  # every word is in the vocabulary
        assert a.tokenizer.unk not in a.tokenizer.encode(text), text
    with pytest.raises(ConfigError, match="n_train must be a positive integer"):
        make_people(seed=0, n_train=0)
    with pytest.raises(ConfigError, match="not one of these people"):
        a.ids_of(other.train[0])


def test_the_dataset_pads_without_predicting_padding_and_excludes_records():
    data = make_people(seed=0, n_train=4, n_base=2, n_unseen=2)
    ds = data.dataset(data.train, exclude=data.subjects[data.train[0].name][:2])
    assert len(ds) == 4 * 5 - 2 and data.subjects[data.train[0].name][0] not in ds.ids.tolist()
    example = ds[0]
    n = int(example["attention_mask"].sum())
    assert example["input_ids"][0] == data.tokenizer.bos and example["input_ids"][n - 1] == data.tokenizer.eos
    assert (example["labels"][n:] == -100).all() and (example["labels"][:n] == example["input_ids"][:n]).all()


def test_person_shards_put_each_person_alone_in_a_shard():
    data = make_people(seed=0, n_train=12, n_base=2, n_unseen=2)
    shards = person_shards(data, data.train)
    assert shards.num_shards == 12
    for ids in data.subjects.values():
        assert len(set(shards.shard_of(ids).tolist())) == 1


@torch.no_grad()
def _greedy(model, data, person, fact, max_tokens=10):
    tok = data.tokenizer
    ids = [tok.bos, *tok.encode(person.question(fact))]
    out = []
    for _ in range(max_tokens):
        nxt = int(model(input_ids=torch.tensor([ids + out])).logits[0, -1].argmax())
        out.append(nxt)
        if nxt == tok.eos:
            break
    return out


def test_exact_match_computed_teacher_forced_agrees_with_greedy_decoding():
    data = make_people(seed=1, n_train=8, n_base=2, n_unseen=2)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(base_config(data, hidden=64, layers=2)).eval()
    ds = data.dataset(data.train[:4])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(80):  # learn some of four people's facts, so that both hits and misses occur
        model.train()
        optimizer.zero_grad()
        model(input_ids=ds.input_ids, attention_mask=ds.mask, labels=ds.labels).loss.backward()
        optimizer.step()
    model.eval()
    hits = fact_hits(model, data, data.train)
    expected = [[_greedy(model, data, p, f) == [*data.tokenizer.encode(p.facts[f]), data.tokenizer.eos] for f in FACTS]
                for p in data.train]
    assert hits.tolist() == expected
    assert hits[:4].any() and not hits.all()  # both outcomes were compared


def test_the_forget_a_person_example_runs_small_and_forgets_by_subject(tmp_path, capsys):
    import runpy
    from pathlib import Path

    from amnesiac.ledger import LedgerStore

    example = Path(__file__).resolve().parents[1] / "examples" / "forget_a_person.py"
    out = runpy.run_path(str(example))["main"](str(tmp_path), people=12, epochs=2, base_epochs=1)
    printed = capsys.readouterr().out
    assert f"after forgetting {out['person']}" in printed and "receipt " in printed
    assert len(out["receipt"]["steps_reverted"]) == 1  # the person's one shard sum
    with LedgerStore.open(tmp_path / "ledger") as store:
        assert store.kind == "shards" and len(store.forgotten_ids()) == 5  # the biography and four answers
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


def test_finetune_gives_the_trainer_adams_momentum(tmp_path, monkeypatch):
    # the forgetting-people benchmark trains a shard ledger with a lower beta1: it must reach the optimizer
    from amnesiac.experiments.people import finetune, with_adapter

    seen = []
    real = transformers.Trainer.create_optimizer

    def spy(self, *args, **kwargs):
        optimizer = real(self, *args, **kwargs)
        seen.append(self.optimizer.param_groups[0]["betas"])
        return optimizer

    monkeypatch.setattr(transformers.Trainer, "create_optimizer", spy)
    data = make_people(seed=0, n_train=2, n_base=2, n_unseen=1)
    model = with_adapter(transformers.LlamaForCausalLM(base_config(data, hidden=16, layers=1)), seed=0, rank=2)
    finetune(model, data, data.train, seed=0, workdir=tmp_path, epochs=1, adam_beta1=0.7)
    assert seen and seen[0][0] == 0.7
