"""Record a ledger from your own PyTorch loop, then forget five records: no run directory, no registry.

    python examples/own_loop.py /tmp/own-loop

Your model, optimizer, Dataset and loop stay as they are; the recorder needs each batch's record ids.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from amnesiac import LedgerStore, Recorder, forget_records


class Records(Dataset):
    def __init__(self, n: int = 2000) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 8, generator=g)
        self.y = (self.x[:, 0] > 0).long()
        self.ids = torch.arange(n) * 7 + 1000  # record ids are yours: any non-negative integers

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i], self.ids[i]


def main(folder: str) -> dict:
    out = Path(folder)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ledger = LedgerStore.create(out / "ledger", initial=model.state_dict(), manifest={"storage_dtype": "float32"})
    loader = DataLoader(Records(), batch_size=20, shuffle=True, generator=torch.Generator().manual_seed(1))
    with Recorder(model, optimizer, ledger) as recorder:
        for _epoch in range(3):
            for x, y, ids in loader:
                with recorder.batch(ids):  # the forward pass belongs inside the block
                    loss = torch.nn.functional.cross_entropy(model(x), y)
                    loss.backward()
                    optimizer.step()
                    optimizer.zero_grad()
    ledger.mark_head(model)  # this model is the one the ledger describes
    deletion = forget_records(model, ledger, [1000, 1007, 1700, 1994, 2393], save_to=out / "model.safetensors")
    ledger.close()
    print(f"reverted {deletion.receipt['n_steps_reverted']} of {deletion.plan.total_steps} steps; the new model is "
          f"in {out / 'model.safetensors'}; receipt kept in the ledger's audit log")
    return deletion.receipt


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
