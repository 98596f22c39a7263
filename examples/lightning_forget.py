"""Train with PyTorch Lightning, record a ledger with AmnesiacCallback, then forget five records.

    pip install -e '.[lightning]'
    python examples/lightning_forget.py /tmp/lightning-ledger

The data is synthetic and the model tiny, so this runs in seconds on a CPU; your own LightningModule and
DataLoader work the same way, as long as each batch carries its record ids.
"""

from __future__ import annotations

import sys
import tempfile

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from amnesiac import forget_records
from amnesiac.integrations.lightning import AmnesiacCallback


class Records(Dataset):
    """(x, y, record id): ids are the records' own numbers, not positions."""

    def __init__(self, n: int = 4096) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 12, generator=g)
        self.y = (self.x[:, :3].sum(1) > 0).long()
        self.ids = torch.arange(10_000, 10_000 + n)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i], self.ids[i]


class Classifier(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))

    def training_step(self, batch, batch_idx):
        x, y, _ids = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def main(ledger_dir: str) -> dict:
    torch.manual_seed(0)
    model = Classifier()
    callback = AmnesiacCallback(ledger_dir)
    trainer = pl.Trainer(max_epochs=2, callbacks=[callback], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, DataLoader(Records(), batch_size=32, shuffle=True))
    # the callback marked the trained model as the ledger's head; forget five records from it
    deletion = forget_records(model, callback.store, [10_003, 10_050, 10_101, 10_150, 10_222])
    callback.store.close()
    print(f"reverted {deletion.receipt['n_steps_reverted']} of {deletion.plan.total_steps} steps; "
          f"receipt: ids digest {deletion.receipt['ids_digest'][:16]}..., model {deletion.receipt['model_hash_after'][:16]}...")
    return deletion.receipt


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp() + "/ledger")
