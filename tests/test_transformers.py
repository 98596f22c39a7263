"""The Hugging Face Trainer records into a ledger (amnesiac.integrations.transformers), with a LoRA adapter on a
tiny Llama-architecture model built from a config (nothing downloaded): the ledger's updates add up to the
final adapter minus the initial one, only the adapter is stored, and forgetting ids subtracts exactly their
steps' updates."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from amnesiac import forget_records  # noqa: E402
from amnesiac.data import make_shards  # noqa: E402
from amnesiac.errors import ConfigError  # noqa: E402
from amnesiac.integrations.transformers import AmnesiacTrainerCallback, confine_to_shards  # noqa: E402
from amnesiac.ledger import LedgerStore, tracked_state  # noqa: E402


def _base(seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    return transformers.LlamaForCausalLM(config)


def _lora_model(seed: int = 0):
    base = _base(seed)
    lora = peft.LoraConfig(r=32, lora_alpha=32, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    return peft.get_peft_model(base, lora)


class _Examples(torch.utils.data.Dataset):
    """24 token sequences, each with its record id in the ``amnesiac_id`` column."""

    def __init__(self, n: int = 24, length: int = 12) -> None:
        g = torch.Generator().manual_seed(1)
        self.tokens = torch.randint(0, 64, (n, length), generator=g)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | int]:
        return {"input_ids": self.tokens[i], "labels": self.tokens[i], "amnesiac_id": 1000 + i}


def _train(tmp_path, model, *, remove_unused_columns=False, accumulate=2, clip=1.0, shards=None, save_steps=None,
           resume=None, epochs=2):
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, gradient_accumulation_steps=accumulate,
        num_train_epochs=epochs, learning_rate=5e-3, max_grad_norm=clip, report_to=[],
        save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500, logging_strategy="no",
        remove_unused_columns=remove_unused_columns, use_cpu=True, seed=0, dataloader_num_workers=0)
    callback = AmnesiacTrainerCallback(tmp_path / "ledger", shards=shards)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=_Examples(), callbacks=[callback])
    if shards is not None:
        confine_to_shards(trainer, shards)
    trainer.train(resume_from_checkpoint=resume)
    return trainer, callback


def _adapter(model):
    return {k: v.detach().clone() for k, v in tracked_state(model).items()}


def test_the_ledger_holds_only_the_adapter_and_its_updates_add_up_exactly(tmp_path):
    model = _lora_model()
    before = _adapter(model)
    assert before and all("lora_" in k for k in before)  # only the adapter trains
    trainer, callback = _train(tmp_path, model)
    after = _adapter(model)
    with LedgerStore.open(tmp_path / "ledger") as store:
        rows = list(store.iter_steps())
        assert len(rows) == trainer.state.global_step == 6  # 24 examples / (4 x 2 accumulated) x 2 epochs
        assert all(r.ids.size == 8 for r in rows)  # both micro-batches' ids went to their one step
        total = {k: torch.zeros_like(v, dtype=torch.float32) for k, v in before.items()}
        for r in rows:
            for k, d in store.load_update(r).items():
                total[k] += d.float()
        for k in before:
            torch.testing.assert_close(before[k].float() + total[k], after[k].float(), atol=1e-5, rtol=0)
        adapter_bytes = sum(v.numel() * v.element_size() for v in before.values())
        per_update = store.index.counts()["bytes"] / len(rows)
        assert per_update <= 1.2 * adapter_bytes, (per_update, adapter_bytes)
        assert store.index.get_meta("head_hash")  # marked at the end of training


def test_forgetting_ids_subtracts_exactly_their_steps_updates(tmp_path):
    model = _lora_model()
    _train(tmp_path, model)
    forgotten = [1003, 1017]
    with LedgerStore.open(tmp_path / "ledger") as store:
        steps = store.steps_for_ids(forgotten)
        expected = _adapter(model)
        for s in steps:
            for k, d in store.load_update(store.index.step(s)).items():
                expected[k] = expected[k] - d.to(expected[k].dtype)
    done = forget_records(model, tmp_path / "ledger", forgotten, force=True)
    assert done.receipt.steps_reverted == steps and steps
    for k, v in _adapter(model).items():
        torch.testing.assert_close(v, expected[k], atol=1e-6, rtol=0)


def test_subject_aligned_shards_confine_every_accumulated_step_and_forgetting_a_subject_subtracts_its_shard(tmp_path):
    ids = 1000 + torch.arange(24).numpy()
    subjects = {f"person{k}": (1000 + torch.arange(3 * k, 3 * k + 3)).tolist() for k in range(8)}  # 3 records each
    shards = make_shards(ids, shard_size=6, subjects=subjects, seed=0)
    steps_seen: list[list[int]] = []
    model = _lora_model()
    before = _adapter(model)
    trainer, callback = _train(tmp_path, model, shards=shards, accumulate=2)
    assert trainer.state.global_step == 2 * 4  # 4 shards of 6: one step (2 x 3) each, 2 epochs
    with LedgerStore.open(tmp_path / "ledger") as store:
        assert store.kind == "shards"
        rows = list(store.iter_steps())
        for r in rows:
            steps_seen.append(sorted(r.ids.tolist()))
            assert len(set(shards.shard_of(r.ids).tolist())) == 1  # one shard per stored sum
        total = {k: torch.zeros_like(v) for k, v in before.items()}
        for r in rows:
            for k, d in store.load_update(r).items():
                total[k] += d.float()
        for k, v in _adapter(model).items():  # the shard sums add up to the whole training
            torch.testing.assert_close(before[k] + total[k], v, atol=1e-5, rtol=0)
        person = subjects["person5"]
        [shard_row] = [r for r in rows if set(person) <= set(r.ids.tolist())]
        expected = {k: v - store.load_update(shard_row)[k].float() for k, v in _adapter(model).items()}
    assert all(len(s) == 6 for s in steps_seen)
    done = forget_records(model, tmp_path / "ledger", person, force=True)
    assert len(done.receipt.steps_reverted) == 1
    for k, v in _adapter(model).items():
        torch.testing.assert_close(v, expected[k], atol=1e-6, rtol=0)


def test_a_shard_too_small_for_the_accumulated_micro_batches_is_refused(tmp_path):
    shards = make_shards(1000 + torch.arange(24).numpy(), shard_size=2, seed=0)
    with pytest.raises(ConfigError, match="cannot fill 4 accumulated"):
        _train(tmp_path, _lora_model(), shards=shards, accumulate=4)


def test_resuming_from_a_checkpoint_cuts_the_ledger_back_to_it(tmp_path):
    import safetensors.torch

    model = _lora_model()
    trainer, callback = _train(tmp_path, model, save_steps=2, accumulate=1, epochs=1)  # 6 steps, checkpoints at 2, 4, 6
    with LedgerStore.open(tmp_path / "ledger") as store:
        assert store.last_step() == 6
        marks = [(e["global_step"], e["ledger_step"]) for e in store.events("trainer_checkpoint")]
        assert marks == [(2, 2), (4, 4), (6, 6)]
    # the run died after step 6 and resumes from the checkpoint at step 2: steps 3-6 are trained again
    resumed = _lora_model()
    checkpoint = tmp_path / "out" / "checkpoint-2"
    saved = safetensors.torch.load_file(str(checkpoint / "adapter_model.safetensors"))
    assert saved  # the checkpoint holds the adapter at step 2
    trainer2, callback2 = _train(tmp_path, resumed, save_steps=2, accumulate=1, epochs=1, resume=str(checkpoint))
    with LedgerStore.open(tmp_path / "ledger") as store:
        rows = list(store.iter_steps())
        assert [r.step for r in rows] == [1, 2, 3, 4, 5, 6]
        assert store.events("resume")[-1]["dropped"] == 4
        start = {k: v.float() for k, v in store.load_initial().items()}
        total = {k: torch.zeros_like(v, dtype=torch.float32) for k, v in _adapter(resumed).items()}
        for r in rows:
            for k, d in store.load_update(r).items():
                total[k] += d.float()
    for k, v in _adapter(resumed).items():  # the cut-back ledger plus the steps after the resume add up exactly
        torch.testing.assert_close(start[k] + total[k], v.float(), atol=1e-5, rtol=0)
    assert forget_records(resumed, tmp_path / "ledger", [1003], force=True).receipt.steps_reverted


def test_a_ledger_that_has_no_mark_of_the_checkpoint_or_a_fresh_run_into_a_used_ledger_is_refused(tmp_path):
    from amnesiac.errors import LedgerError

    _, callback = _train(tmp_path, _lora_model(), save_steps=3, accumulate=1, epochs=1)
    with pytest.raises(LedgerError, match="already holds a ledger"):
        _train(tmp_path, _lora_model(), accumulate=1, epochs=1)
    (tmp_path / "fresh").mkdir()
    with pytest.raises(LedgerError, match="holds no ledger"):
        _train(tmp_path / "fresh", _lora_model(), accumulate=1, epochs=1, resume=str(tmp_path / "out" / "checkpoint-3"))


def test_the_id_column_never_reaches_the_model_and_a_missing_one_is_refused(tmp_path):
    model = _lora_model()
    seen: list[set[str]] = []
    model.get_base_model().register_forward_pre_hook(lambda m, a, kw: seen.append(set(kw)), with_kwargs=True)
    _train(tmp_path, model, accumulate=1)
    assert len(seen) == 12 and all("input_ids" in keys and "amnesiac_id" not in keys for keys in seen)
    with pytest.raises(ConfigError, match="remove_unused_columns=False"):
        _train(tmp_path / "again", _lora_model(), remove_unused_columns=True)


def test_the_readme_snippet_runs_as_written(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = text.index("\n## Fine-tuned models: the Hugging Face Trainer and LoRA\n")
    section = text[start: text.index("\n## ", start + 1)]
    [code] = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["deletion"].receipt.steps_reverted
    with LedgerStore.open(tmp_path / "hf-ledger") as store:
        assert sorted(store.forgotten_ids().tolist()) == [3, 17]


def test_a_merged_adapter_is_refused_with_the_reason(tmp_path):
    from amnesiac.errors import ModelMismatchError

    model = _lora_model()
    _train(tmp_path, model)
    merged = model.merge_and_unload()
    with pytest.raises(ModelMismatchError, match="merged into its base"):
        forget_records(merged, tmp_path / "ledger", [1003], force=True)
    with LedgerStore.open(tmp_path / "ledger") as store:
        assert not list(store.iter_steps(state="reverted")) and store.events("forget") == []


def test_the_head_covers_the_adapter_and_the_same_adapter_on_another_base_is_refused(tmp_path):
    from amnesiac.errors import ModelMismatchError
    from amnesiac.utils import state_hash

    model = _lora_model()
    _train(tmp_path, model)
    with LedgerStore.open(tmp_path / "ledger") as store:
        assert store.manifest["head_scope"] == "recorded" and store.manifest["base_fingerprint"]
        assert store.index.get_meta("head_hash") == state_hash(tracked_state(model))  # the adapter alone
    other = _lora_model(seed=1)  # another base, the trained adapter copied onto it
    other.load_state_dict({k: v for k, v in model.state_dict().items() if "lora_" in k}, strict=False)
    with pytest.raises(ModelMismatchError, match="frozen base"):
        forget_records(other, tmp_path / "ledger", [1003], force=True)
    assert forget_records(model, tmp_path / "ledger", [1003], force=True).receipt.steps_reverted


def test_text_membership_scores_see_memorised_sequences_and_not_unseen_ones():
    from amnesiac.attacks.text import membership_scores, min_k, text_membership, zlib_ratio

    lp = torch.tensor([-1.0, -5.0, -2.0, -0.5, -3.0])
    assert min_k(lp, 0.4) == -4.0 and min_k(lp, 1.0) == pytest.approx(float(lp.mean()))
    assert zlib_ratio(lp, "ab" * 50) < zlib_ratio(lp, bytes(range(100)))  # easy to compress: a larger penalty
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    model = transformers.LlamaForCausalLM(config)
    g = torch.Generator().manual_seed(3)
    members, others = torch.randint(0, 64, (16, 16), generator=g), torch.randint(0, 64, (16, 16), generator=g)
    before = text_membership(model, list(members), list(others))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(60):  # memorise the members
        optimizer.zero_grad()
        model(input_ids=members, labels=members).loss.backward()
        optimizer.step()
    after = text_membership(model, list(members), list(others))
    assert all(0.2 < v < 0.8 for v in before.values()), before  # an untrained model cannot tell them apart
    assert all(v > 0.95 for v in after.values()), after
    scores = membership_scores(model, list(members[:3]))
    assert set(scores) == {"loss", "zlib", "min_k"} and all(s.shape == (3,) for s in scores.values())


def test_forgetting_from_the_saved_adapter_alone_equals_forgetting_from_the_peft_model(tmp_path):
    import shutil

    import safetensors.torch

    from amnesiac.integrations.transformers import forget_saved_adapter

    model = _lora_model()
    _train(tmp_path, model)
    model.save_pretrained(tmp_path / "adapter")
    model.save_pretrained(tmp_path / "old")
    shutil.copytree(tmp_path / "ledger", tmp_path / "ledger-copy")
    done = forget_saved_adapter(tmp_path / "adapter", tmp_path / "ledger", [1003, 1017], force=True)
    same = forget_records(model, tmp_path / "ledger-copy", [1003, 1017], force=True)  # the live PEFT model
    assert done.receipt.steps_reverted == same.receipt.steps_reverted
    assert done.receipt.model_hash_after == same.receipt.model_hash_after
    saved = safetensors.torch.load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    live = {k.replace(".default.", "."): v for k, v in _adapter(model).items()}
    assert set(saved) == set(live)
    for k, v in live.items():
        torch.testing.assert_close(saved[k], v, atol=0, rtol=0)
    reloaded = peft.PeftModel.from_pretrained(_base(), str(tmp_path / "adapter"), is_trainable=True)
    assert not (tmp_path / "adapter" / "amnesiac-head.safetensors").exists()
    from amnesiac.ledger import head_hash
    with LedgerStore.open(tmp_path / "ledger") as store:  # the rewritten file loads as the ledger's head
        assert head_hash(store.manifest, reloaded) == store.index.get_meta("head_hash")
    # the old adapter (not the head any more) is refused, and its file left as it was
    before = (tmp_path / "old" / "adapter_model.safetensors").read_bytes()
    from amnesiac.errors import ModelMismatchError
    with pytest.raises(ModelMismatchError):
        forget_saved_adapter(tmp_path / "old", tmp_path / "ledger", [1005], force=True)
    assert (tmp_path / "old" / "adapter_model.safetensors").read_bytes() == before
    with pytest.raises(ConfigError, match="holds no adapter_model.safetensors"):
        forget_saved_adapter(tmp_path, tmp_path / "ledger", [1005])
    from amnesiac.errors import RunDirError
    damaged = bytearray(before)
    damaged[3] ^= 0xFF  # the header's length
    (tmp_path / "old" / "adapter_model.safetensors").write_bytes(bytes(damaged))
    with LedgerStore.open(tmp_path / "ledger") as store:
        events = len(store.events())
    with pytest.raises(RunDirError, match="old/adapter_model.safetensors is not a readable safetensors file"):
        forget_saved_adapter(tmp_path / "old", tmp_path / "ledger", [1005], force=True)
    with LedgerStore.open(tmp_path / "ledger") as store:
        assert len(store.events()) == events  # refused before anything changed


SAVED_ADAPTER_FORGET = """
import sys
from amnesiac.integrations.transformers import forget_saved_adapter
forget_saved_adapter(sys.argv[1], sys.argv[2], [1003, 1017], force=True)
"""


@pytest.mark.parametrize("point", ["library:after-next", "library:after-ledger", "adapter:before-rewrite"])
def test_a_saved_adapter_deletion_killed_at_any_point_ends_with_the_file_and_the_ledger_agreeing(tmp_path, point):
    import os
    import shutil
    import subprocess
    import sys

    import safetensors.torch

    from amnesiac.cli import main
    from amnesiac.integrations.transformers import forget_saved_adapter

    model = _lora_model()
    _train(tmp_path, model)
    model.save_pretrained(tmp_path / "adapter")
    shutil.copytree(tmp_path / "ledger", tmp_path / "reference")
    expected = forget_records(model, tmp_path / "reference", [1003, 1017], force=True)
    env = {**os.environ, "AMNESIAC_CRASH_AT": point}
    done = subprocess.run([sys.executable, "-c", SAVED_ADAPTER_FORGET, str(tmp_path / "adapter"), str(tmp_path / "ledger")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]  # killed where asked
    # a retry (another request) first completes whatever the killed one committed, then forgets its own ids
    forget_saved_adapter(tmp_path / "adapter", tmp_path / "ledger", [1005], force=True)
    forget_records(model, tmp_path / "reference", [1005], force=True)
    if point == "library:after-next":  # died before the commit: the retry also has to forget 1003 and 1017
        with LedgerStore.open(tmp_path / "ledger") as store:
            assert not set(store.forgotten_ids().tolist()) & {1003, 1017}
        forget_saved_adapter(tmp_path / "adapter", tmp_path / "ledger", [1003, 1017], force=True)
    saved = safetensors.torch.load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    with LedgerStore.open(tmp_path / "ledger") as store, LedgerStore.open(tmp_path / "reference") as ref:
        assert sorted(store.forgotten_ids().tolist()) == sorted(ref.forgotten_ids().tolist()) == [1003, 1005, 1017]
    for k, v in _adapter(model).items():  # the same adapter as the live model's after the same deletions
        torch.testing.assert_close(saved[k.replace(".default.", ".")], v, atol=1e-6, rtol=0)
    assert not any(p.name.startswith("amnesiac-head") for p in (tmp_path / "adapter").iterdir())
    assert main(["ledger", "verify", str(tmp_path / "ledger"), "--deep"]) == 0
    assert expected.receipt.steps_reverted


def test_a_shard_ledger_resumes_from_the_checkpoint_its_head_was_committed_at_and_refuses_an_older_one(tmp_path):
    from amnesiac.errors import LedgerError

    shards = make_shards(1000 + torch.arange(24).numpy(), shard_size=6, seed=0)  # 4 shards, 2 batches of 4 each
    _train(tmp_path, _lora_model(), shards=shards, accumulate=1, epochs=1, save_steps=2)
    with LedgerStore.open(tmp_path / "ledger") as store:
        assert [e["global_step"] for e in store.events("trainer_checkpoint")] == [2, 4, 6, 8]
        sums = {r.step: store.load_update(r) for r in store.iter_steps()}
    with pytest.raises(LedgerError, match="cannot be cut back"):
        _train(tmp_path, _lora_model(), shards=shards, accumulate=1, epochs=1, save_steps=2,
               resume=str(tmp_path / "out" / "checkpoint-4"))
    resumed = _lora_model()  # the latest checkpoint is the head: resuming from it is consistent
    _train(tmp_path, resumed, shards=shards, accumulate=1, epochs=1, save_steps=2,
           resume=str(tmp_path / "out" / "checkpoint-8"))
    with LedgerStore.open(tmp_path / "ledger") as store:
        assert {r.step for r in store.iter_steps()} == set(sums)  # nothing cut, nothing added
    assert forget_records(resumed, tmp_path / "ledger", [1003], force=True).receipt.steps_reverted
