"""Forgetting a person from a LoRA fine-tune of a small language model (the fictitious people of
:mod:`amnesiac.data.people`): the base model, the fine-tune through the Hugging Face Trainer with a ledger, and
the measures the LLM-unlearning literature reports.

- :func:`pretrain_base`: a small Llama-architecture model (a transformers config, nothing downloaded), trained
  on the ``base`` people so that the fine-tune starts from a model that knows the format and the vocabulary.
- :func:`finetune`: a LoRA adapter on that base, trained on the ``train`` people with
  :class:`~amnesiac.integrations.transformers.AmnesiacTrainerCallback` (an every-step ledger, or a shard
  ledger with one shard per person).
- :func:`exact_match`: the share of a person's facts the model completes exactly (greedy decoding after the
  question; computed teacher-forced, which gives the same answer: greedy decoding reproduces the answer and its
  end exactly when every next token's argmax is the right one).
- :func:`membership_auc`: loss, zlib and Min-K% membership AUC of some people's records against people never
  trained on (:mod:`amnesiac.attacks.text`).

Needs the ``hf`` extra (transformers, peft, faker).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.people import FACTS, People, Person
from ..data.shards import make_shards
from ..errors import ConfigError


def _hf() -> tuple[Any, Any]:
    try:
        import peft
        import transformers
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError("fine-tuned language models need the hf extra: pip install 'amnesiac[hf]'") from None
    return transformers, peft


def base_config(data: People, *, hidden: int = 128, layers: int = 4) -> Any:
    transformers, _ = _hf()
    return transformers.LlamaConfig(vocab_size=len(data.tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                                    num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                                    max_position_embeddings=max(64, data.max_length), pad_token_id=data.tokenizer.pad,
                                    bos_token_id=data.tokenizer.bos, eos_token_id=data.tokenizer.eos,
                                    tie_word_embeddings=False)


def pretrain_base(data: People, *, seed: int, epochs: int = 40, lr: float = 3e-3, batch_size: int = 32,
                  hidden: int = 128, layers: int = 4, log: Any = None) -> torch.nn.Module:
    """Train every weight of a small causal LM on the ``base`` people (a plain loop: no ledger needed)."""
    transformers, _ = _hf()
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(base_config(data, hidden=hidden, layers=layers))
    ds = data.dataset(data.base)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    total = epochs * -(-len(ds) // batch_size)
    warmup = max(1, total // 20)  # a short warmup and clipping keep the small model's training from spiking
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, max(0.0, 1 - s / total)))
    g = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        for batch in torch.randperm(len(ds), generator=g).split(batch_size):
            out = model(input_ids=ds.input_ids[batch], attention_mask=ds.mask[batch], labels=ds.labels[batch])
            optimizer.zero_grad()
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
        if log is not None and (epoch + 1) % 10 == 0:
            log(f"base model: epoch {epoch + 1}/{epochs}, loss {float(out.loss):.3f}")
    model.eval()
    return model


def with_adapter(base: torch.nn.Module, *, seed: int, rank: int = 16) -> torch.nn.Module:
    """A fresh LoRA adapter (seeded) on a copy of ``base``; only the adapter trains."""
    _, peft = _hf()
    torch.manual_seed(seed)
    config = peft.LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    return peft.get_peft_model(copy.deepcopy(base), config)


def person_shards(data: People, people: Sequence[Person]) -> Any:
    """Subject-aligned shards: one shard per person (all of their records)."""
    ids = [i for p in people for i in data.ids_of(p)]
    return make_shards(ids, shard_size=1 + len(FACTS), subjects={p.name: data.ids_of(p) for p in people})


def finetune(model: torch.nn.Module, data: People, people: Sequence[Person], *, seed: int, workdir: str | Path,
             ledger: str | Path | None = None, shards: Any = None, exclude: Sequence[int] = (), epochs: int = 30,
             lr: float = 3e-3, batch_size: int = 10, adam_beta1: float = 0.9) -> float:
    """Train ``model``'s adapter on ``people``'s records (less ``exclude``) with the Trainer; with ``ledger`` the
    run is recorded there (a shard ledger with ``shards``). ``adam_beta1`` is AdamW's momentum: with one step per
    shard visit, a step's gradient reaches the following steps (other shards') through it, so a lower value keeps
    more of each person's effect in their own shard's sum. Returns the training time in seconds."""
    transformers, _ = _hf()
    from ..integrations.transformers import AmnesiacTrainerCallback, confine_to_shards

    args = transformers.TrainingArguments(
        output_dir=str(Path(workdir) / "trainer"), per_device_train_batch_size=batch_size, num_train_epochs=epochs,
        learning_rate=lr, adam_beta1=adam_beta1, lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        report_to=[], save_strategy="no", logging_strategy="no", remove_unused_columns=False, use_cpu=True,
        seed=seed, data_seed=seed, dataloader_num_workers=0, disable_tqdm=True)
    callbacks = [AmnesiacTrainerCallback(ledger, shards=shards)] if ledger is not None else []
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data.dataset(people, exclude=exclude),
                                   callbacks=callbacks)
    if shards is not None:
        confine_to_shards(trainer, shards)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    model.eval()
    return seconds


@torch.no_grad()
def fact_hits(model: torch.nn.Module, data: People, people: Sequence[Person]) -> np.ndarray:
    """For each person and fact (people x facts), whether greedy decoding after the question gives the answer
    and then ends."""
    tok = data.tokenizer
    prompts, answers = [], []
    for p in people:
        for f in FACTS:
            prompts.append([tok.bos, *tok.encode(p.question(f))])
            answers.append([*tok.encode(p.facts[f]), tok.eos])
    width = max(len(a) + len(b) for a, b in zip(prompts, answers, strict=True))
    ids = torch.full((len(prompts), width), tok.pad, dtype=torch.int64)
    mask = torch.zeros_like(ids)
    for k, (a, b) in enumerate(zip(prompts, answers, strict=True)):
        ids[k, : len(a) + len(b)] = torch.tensor(a + b)
        mask[k, : len(a) + len(b)] = 1
    was_training = model.training
    model.eval()
    hits = np.zeros(len(prompts), dtype=bool)
    for chunk in torch.arange(len(prompts)).split(256):
        logits = model(input_ids=ids[chunk], attention_mask=mask[chunk]).logits
        guess = logits.argmax(-1)
        for row, k in enumerate(chunk.tolist()):
            n_prompt, n_answer = len(prompts[k]), len(answers[k])
            hits[k] = bool((guess[row, n_prompt - 1 : n_prompt - 1 + n_answer]
                            == ids[chunk[row], n_prompt : n_prompt + n_answer]).all())
    model.train(was_training)
    return hits.reshape(len(people), len(FACTS))


def exact_match(model: torch.nn.Module, data: People, people: Sequence[Person]) -> float:
    """The share of ``people``'s facts the model completes exactly."""
    return float(fact_hits(model, data, people).mean()) if people else float("nan")


def membership_auc(model: torch.nn.Module, data: People, members: Sequence[Person],
                   non_members: Sequence[Person]) -> dict[str, float]:
    """Loss, zlib and Min-K% membership AUC of ``members``' records against ``non_members``' records."""
    from ..attacks.text import text_membership

    def texts(people: Sequence[Person]) -> list[str]:
        return [t for p in people for t in p.texts()]

    def seqs(people: Sequence[Person]) -> list[torch.Tensor]:
        return [torch.tensor(data.sequence(t)) for t in texts(people)]

    return text_membership(model, seqs(members), seqs(non_members), member_texts=texts(members),
                           non_member_texts=texts(non_members))


def _batches(ds: Any, batch_size: int, steps: int, g: torch.Generator) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    while len(out) < steps:
        out += list(torch.randperm(len(ds), generator=g).split(batch_size))
    return out[:steps]


def _short_run_optimizer(model: torch.nn.Module, lr: float, steps: int) -> tuple[Any, Any]:
    """AdamW over the trainable weights with a linear warmup over the first tenth of ``steps`` (a fresh Adam's
    first steps move every weight by about ``lr``, whatever its gradient), the same for every short method."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 10)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))


def _step(model: torch.nn.Module, loss: torch.Tensor, optimizer: Any, schedule: Any) -> None:
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    schedule.step()


def repair(model: torch.nn.Module, data: People, people: Sequence[Person], ledger: str | Path, *, steps: int,
           seed: int, lr: float = 1e-3, batch_size: int = 10, shards: Any = None) -> float:
    """A short recorded fine-tune on retained ``people`` after a deletion (``Recorder(kind="repair")``), then a
    new head: a later deletion can undo these steps too. With ``shards`` (a shard ledger) each step's batch is
    one shard's records. Returns the seconds taken."""
    from ..ledger import LedgerStore, Recorder

    start = time.perf_counter()
    if steps <= 0:
        return 0.0
    g = torch.Generator().manual_seed(seed)
    optimizer, schedule = _short_run_optimizer(model, lr, steps)
    ds = data.dataset(people)
    if shards is not None:
        order = torch.randperm(len(people), generator=g).tolist()
        position = {int(i): k for k, i in enumerate(ds.ids.tolist())}
        groups = [torch.tensor([position[i] for i in data.ids_of(people[j])]) for j in order]
        batches = [groups[s % len(groups)] for s in range(steps)]
    else:
        batches = _batches(ds, batch_size, steps, g)
    model.train()
    with LedgerStore.open(ledger, writable=True) as store, \
            Recorder(model, optimizer, store, kind="repair", start_step=store.last_step(),
                     policy="shards" if shards is not None else "all", shards=shards) as recorder:
        for b in batches:
            with recorder.batch(ds.ids[b]):
                out = model(input_ids=ds.input_ids[b], attention_mask=ds.mask[b], labels=ds.labels[b])
                _step(model, out.loss, optimizer, schedule)
        recorder.flush()
        store.mark_head(model)
    model.eval()
    return time.perf_counter() - start


def naive(model: torch.nn.Module, data: People, retained: Sequence[Person], *, steps: int, seed: int,
          lr: float = 1e-3, batch_size: int = 10) -> float:
    """Fine-tune further on the retained people only (no ledger). Returns the seconds taken."""
    return neggrad_plus(model, data, [], retained, steps=steps, seed=seed, lr=lr, batch_size=batch_size, beta=1.0)


def neggrad_plus(model: torch.nn.Module, data: People, forget: Sequence[Person], retained: Sequence[Person], *,
                 steps: int, seed: int, lr: float = 1e-3, batch_size: int = 10, beta: float = 0.9) -> float:
    """NegGrad+ (Kurmanji et al., 2023): descend ``beta * loss(retained) - (1 - beta) * loss(forget)``; with
    ``beta = 1`` it is the naive fine-tune on the retained records. Returns the seconds taken."""
    start = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    optimizer, schedule = _short_run_optimizer(model, lr, steps)
    keep = data.dataset(retained)
    gone = data.dataset(forget) if forget else None
    model.train()
    for b in _batches(keep, batch_size, steps, g):
        loss = beta * model(input_ids=keep.input_ids[b], attention_mask=keep.mask[b], labels=keep.labels[b]).loss
        if gone is not None and beta < 1:
            f = torch.randperm(len(gone), generator=g)[:batch_size]
            loss = loss - (1 - beta) * model(input_ids=gone.input_ids[f], attention_mask=gone.mask[f],
                                             labels=gone.labels[f]).loss
        _step(model, loss, optimizer, schedule)
    model.eval()
    return time.perf_counter() - start
