"""Run directories: the layer below unlearning that holds a model, its ledger and its commit journal.

Modules: :mod:`.rundir` (the directory), :mod:`.train` (training one), :mod:`.audit` (checking one),
:mod:`.commit` (the journal that replaces model and ledger head together), :mod:`.checkpoint` (tensors on disk).

A run directory holds everything about one model::

    RUN/config.json              the full configuration (TrainConfig) and environment
    RUN/model.safetensors        the current model (metadata: epoch, step, hash)
    RUN/optimizer-S.safetensors  optimizer state matching the model at step S (for resuming)
    RUN/metrics.json             one record per evaluation
    RUN/ledger/                  the update ledger, when recording (see amnesiac.ledger)

>>> import tempfile
>>> from amnesiac.run import TrainConfig, train_run
>>> out = tempfile.mkdtemp() + "/run"
>>> result = train_run(TrainConfig(dataset="digits", model="small-cnn", epochs=1, record="none"), out, progress=False)
>>> sorted(p.name for p in result.run.path.iterdir() if not p.name.startswith('.'))[:3]
['config.json', 'metrics.json', 'model.safetensors']
"""

from ..config import TrainConfig
from ..names import RECORD_CHOICES
from .audit import RunAudit, audit_run
from .distributed import train_run_distributed
from .rundir import RunDir, evaluation_sets, select_training_data
from .train import TrainResult, train_run

__all__ = ["RECORD_CHOICES", "RunAudit", "RunDir", "TrainConfig", "TrainResult", "audit_run", "evaluation_sets",
           "select_training_data", "train_run", "train_run_distributed"]
