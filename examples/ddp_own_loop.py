"""Record one ledger from your own DistributedDataParallel loop, then forget three records in one process.

    torchrun --standalone --nproc_per_node 2 examples/ddp_own_loop.py /tmp/ddp-ledger

Every rank trains on its slice of each global batch (DistributedSampler); DistributedRecorder gathers the
ids of every rank's slice at each batch, and rank 0 alone writes the ledger. Afterwards the ledger is an
ordinary one: rank 0 forgets from it with forget_records, as a single-process script would.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from amnesiac import LedgerStore, forget_records
from amnesiac.ledger.distributed import DistributedRecorder


class Records(Dataset):
    def __init__(self, n: int = 4096) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 12, generator=g)
        self.y = (self.x[:, :3].sum(1) > 0).long()
        self.ids = torch.arange(20_000, 20_000 + n)  # your record ids

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i], self.ids[i]


def main(folder: str, epochs: int = 2) -> dict | None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = Records()
    sampler = DistributedSampler(data, shuffle=True, seed=0)
    loader = DataLoader(data, batch_size=16, sampler=sampler)  # 16 per rank: global batches of 16 x ranks
    store = LedgerStore.create(Path(folder) / "ledger", initial=model.state_dict(),
                               manifest={"storage_dtype": "float32"}) if rank == 0 else None
    with DistributedRecorder(model, optimizer, store) as recorder:
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            recorder.set_epoch(epoch)
            for x, y, ids in loader:
                with recorder.batch(ids):
                    torch.nn.functional.cross_entropy(ddp(x), y).backward()
                    optimizer.step()
                    optimizer.zero_grad()
    # DDP holds the process group: drop it now, so the group's threads end at destroy_process_group below and
    # not later, when main() returns (a C++ "terminate called without an active exception" then aborted a rank)
    del ddp
    receipt = None
    if rank == 0:
        store.mark_head(model)  # the trained model is the ledger's head
        done = forget_records(model, store, [20_003, 20_500, 21_000], save_to=Path(folder) / "model.safetensors")
        store.close()
        receipt = done.receipt
        print(f"{receipt['plan']['total_steps']} steps recorded from {dist.get_world_size()} processes; forgetting "
              f"3 records subtracted {receipt['n_steps_reverted']} of them")
    dist.barrier()
    dist.destroy_process_group()
    return receipt


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "ddp-ledger")
