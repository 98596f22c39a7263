import json

import pytest
import torch

from amnesiac.data import load_dataset
from amnesiac.errors import ConfigError, RunDirError
from amnesiac.models import build_model
from amnesiac.run import RunDir, TrainConfig, train_run
from amnesiac.training import batches, evaluate, fit, make_optimizer
from amnesiac.utils import model_hash


def _train(seed, epochs=1, optimizer="adam"):
    bundle = load_dataset("digits")
    torch.manual_seed(seed)
    net = build_model("small-cnn", in_channels=1, num_classes=10, image_size=8)
    opt = make_optimizer(optimizer, net.parameters(), lr=1e-2 if optimizer == "sgd" else 1e-3, weight_decay=1e-4)
    fit(net, opt, bundle.train, epochs=epochs, batch_size=32, seed=seed, progress=False)
    return net


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_same_seed_same_weights_bit_for_bit(optimizer):
    a, b = _train(3, optimizer=optimizer), _train(3, optimizer=optimizer)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    c = _train(4, optimizer=optimizer)
    assert model_hash(a) != model_hash(c)


def test_batch_order_depends_only_on_seed_and_epoch():
    ds = load_dataset("digits").train
    first = [b[2] for b in batches(ds, 100, seed=1, epoch=2)]
    again = [b[2] for b in batches(ds, 100, seed=1, epoch=2)]
    other = [b[2] for b in batches(ds, 100, seed=1, epoch=3)]
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert not torch.equal(first[0], other[0])
    assert sorted(torch.cat(first).tolist()) == ds.ids.tolist()  # every record once per epoch


def test_digits_small_cnn_reaches_95_percent(tmp_path):
    result = train_run(TrainConfig(epochs=5, record="none"), tmp_path / "run", progress=False)
    assert result.final["test"] >= 0.95
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [r["epoch"] for r in saved] == [1, 2, 3, 4, 5]
    reloaded = RunDir.open(tmp_path / "run").load_model()
    assert model_hash(reloaded) == model_hash(result.model)


def test_resume_matches_an_uninterrupted_run(tmp_path):
    full = train_run(TrainConfig(epochs=3, record="none", seed=5), tmp_path / "full", progress=False)
    train_run(TrainConfig(epochs=2, record="none", seed=5), tmp_path / "part", progress=False)
    # extend the stopped run to 3 epochs and resume it
    cfg = RunDir.open(tmp_path / "part").config
    cfg.epochs = 3
    RunDir.open(tmp_path / "part").write_config(cfg)
    resumed = train_run(cfg, tmp_path / "part", resume=True, progress=False)
    assert model_hash(resumed.model) == model_hash(full.model)


def test_eval_class_and_limit_class(tmp_path):
    cfg = TrainConfig(epochs=1, record="none", limit_class={3: 5}, eval_class=3)
    result = train_run(cfg, tmp_path / "run", progress=False)
    run = RunDir.open(tmp_path / "run")
    data = run.training_data()
    assert int((data.targets == 3).sum()) == 5
    kept = set(data.ids_of_class(3).tolist())  # a seeded random 5 of the class, the same on every read
    assert kept <= set(run.bundle().train.ids_of_class(3).tolist())
    assert kept == set(RunDir.open(tmp_path / "run").training_data().ids_of_class(3).tolist())
    assert {"test", "test_class3", "test_other"} <= set(result.final)


def test_config_errors_are_collected():
    with pytest.raises(ConfigError) as err:
        TrainConfig(epochs=0, batch_size=-1, optimizer="adamm", model="resnet").validate()
    msg = str(err.value)
    assert "epochs must be a positive integer, got 0" in msg and "batch_size" in msg
    assert "optimizer must be one of" in msg and "Did you mean 'resnet18'" in msg


def test_existing_run_dir_is_not_clobbered(tmp_path):
    train_run(TrainConfig(epochs=1, record="none"), tmp_path / "run", progress=False)
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    with pytest.raises(RunDirError, match="already exists"):
        train_run(TrainConfig(epochs=1, record="none", seed=9), tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before


def test_evaluate_topk():
    bundle = load_dataset("digits")
    torch.manual_seed(0)
    net = build_model("small-cnn", in_channels=1, num_classes=10, image_size=8)
    res = evaluate(net, bundle.test, topk=(1, 10))
    assert res["top10"] == 1.0 and 0.0 <= res["accuracy"] <= 1.0 and res["n"] == len(bundle.test)


def test_device_names_are_checked():
    from amnesiac.training import resolve_device

    assert resolve_device(None).type == "cpu" and resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="sees no CUDA device"):
            resolve_device("cuda")
