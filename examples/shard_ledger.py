"""A shard ledger from your own loop: one stored sum per shard whatever the epochs, then forget one record.

    python examples/shard_ledger.py /tmp/shard-ledger

The records are split into fixed shards before training; a ShardBatchSampler makes every batch come from one
shard, so all steps that ever saw a record belong to its shard, and the ledger keeps one summed update per
shard. Forgetting a record subtracts its shard's sum: exactly the paper's theta - sum of the updates of every
step that saw it, over all epochs.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from amnesiac import LedgerStore, Recorder, forget_records
from amnesiac.data import ShardBatchSampler, make_shards


class Records(Dataset):
    def __init__(self, n: int = 400) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 8, generator=g)
        self.y = (self.x[:, 0] + 0.5 * self.x[:, 1] > 0).long()
        self.ids = torch.arange(n) * 3 + 500  # your own record ids

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i], self.ids[i]


def main(folder: str, epochs: int = 4) -> dict:
    out = Path(folder)
    torch.manual_seed(0)
    data = Records()
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    shards = make_shards(data.ids, shard_size=40, seed=0)  # 10 shards of 40 records
    sampler = ShardBatchSampler(shards, data.ids, batch_size=20, seed=0)
    loader = DataLoader(data, batch_sampler=sampler)
    ledger = LedgerStore.create(out / "ledger", initial=model.state_dict(),
                                manifest={"storage_dtype": "float32", "ledger_kind": "shards"})
    with Recorder(model, optimizer, ledger, policy="shards", shards=shards) as recorder:
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            recorder.set_epoch(epoch)
            for x, y, ids in loader:
                with recorder.batch(ids):
                    torch.nn.functional.cross_entropy(model(x), y).backward()
                    optimizer.step()
                    optimizer.zero_grad()
            recorder.flush()
            ledger.mark_head(model)  # the commit point: the shards' new sums and this model, together
    deletion = forget_records(model, ledger, [503], save_to=out / "model.safetensors")
    stored = ledger.summary()
    ledger.close()
    print(f"{epochs} epochs, {stored['steps']} shard sums stored ({stored['bytes']} bytes); forgetting record 503 "
          f"subtracted {deletion.receipt['n_steps_reverted']} shard sum ({deletion.plan.share:.0%} of the shards)")
    return deletion.receipt


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
