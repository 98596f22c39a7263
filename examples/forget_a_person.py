"""Forget one person from a LoRA fine-tune of a small language model, recorded through the Hugging Face Trainer.

    pip install 'amnesiac[hf]'
    python examples/forget_a_person.py [OUT_DIR]        # a few minutes on 2 CPU cores

The people are fictitious (seeded faker profiles, amnesiac.data.people): each has a biography and four
question-answer records, and is a data subject. A small Llama-architecture model (a transformers config, nothing
downloaded) is first trained on other fictitious people, so the fine-tune starts from a base that knows the
format; then a LoRA adapter learns 40 new people through ``Trainer`` with ``AmnesiacTrainerCallback``. Batches
are confined to one person's records (subject-aligned shards, ``confine_to_shards``), so the ledger keeps one
summed adapter update per person, and forgetting a person subtracts exactly their sum. The script prints what
the model answers about the forgotten person and about a retained one, before and after, and the receipt.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

from amnesiac import forget_records
from amnesiac.data.people import FACTS, make_people
from amnesiac.experiments.people import fact_hits, finetune, person_shards, pretrain_base, with_adapter
from amnesiac.ledger import LedgerStore


@torch.no_grad()
def answer(model: torch.nn.Module, data, person, fact: str, max_tokens: int = 8) -> str:
    """Greedy decoding after the question, up to the end token."""
    tok = data.tokenizer
    ids = [tok.bos, *tok.encode(person.question(fact))]
    out: list[int] = []
    for _ in range(max_tokens):
        nxt = int(model(input_ids=torch.tensor([ids + out])).logits[0, -1].argmax())
        if nxt == tok.eos:
            break
        out.append(nxt)
    return tok.decode(out)


def show(title: str, model: torch.nn.Module, data, person) -> None:
    hits = fact_hits(model, data, [person])[0]
    print(f"  {title}: {person.name} ({int(hits.sum())}/{len(FACTS)} facts)")
    for fact, hit in zip(FACTS, hits, strict=True):
        print(f"    {fact:9s} true {person.facts[fact]!r:32s} model {answer(model, data, person, fact)!r}"
              f"{'' if hit else '  (wrong)'}")


def main(out: str, *, people: int = 40, epochs: int = 40, base_epochs: int = 20) -> dict:
    out_dir = Path(out)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    data = make_people(seed=7, n_train=people, n_base=100, n_unseen=10)
    print("pretraining a small base model on 100 other fictitious people ...")
    base = pretrain_base(data, seed=7, epochs=base_epochs)
    model = with_adapter(base, seed=7)
    shards = person_shards(data, data.train)  # one shard per person: all of their records
    print(f"fine-tuning a LoRA adapter on {people} people with the Trainer, one shard per person ...")
    seconds = finetune(model, data, data.train, seed=7, workdir=out_dir, ledger=out_dir / "ledger", shards=shards,
                       epochs=epochs)
    before_all = fact_hits(model, data, data.train).mean()
    with LedgerStore.open(out_dir / "ledger") as store:
        summary = store.summary()
    print(f"  {seconds:.0f} s; the ledger holds {summary['steps']} shard sums of the adapter ({summary['bytes']:,} bytes)")
    person, kept = data.train[3], data.train[min(11, people - 1)]
    print("before the deletion request:")
    show("to forget", model, data, person)
    show("retained ", model, data, kept)
    deletion = forget_records(model, out_dir / "ledger", data.subjects[person.name])
    model.save_pretrained(out_dir / "adapter")  # the adapter alone, without the person
    print(f"after forgetting {person.name} (records {data.subjects[person.name]}):")
    show("forgotten", model, data, person)
    show("retained ", model, data, kept)
    others = [p for p in data.train if p != person]
    print(f"  all {len(others)} retained people: {fact_hits(model, data, others).mean():.0%} of their facts "
          f"(all {people} people before: {before_all:.0%})")
    receipt = deletion.receipt.as_json()
    print(f"receipt {str(receipt.get('receipt_hash'))[:16]}...: {len(receipt['steps_reverted'])} shard sum(s) subtracted "
          f"({deletion.plan.share:.1%} of the stored updates), adapter {receipt['model_hash_before'][:12]} -> "
          f"{receipt['model_hash_after'][:12]}; the ids are committed under a secret the requester keeps")
    return {"person": person.name, "receipt": receipt, "forgotten": fact_hits(model, data, [person]).tolist(),
            "retained": fact_hits(model, data, [kept]).tolist()}


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="forget-a-person-"))
