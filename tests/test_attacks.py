import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from amnesiac.attacks import (
    ShadowRecipe,
    auc,
    best_balanced_accuracy,
    bootstrap_ci,
    inversion_references,
    invert,
    pixel_scores,
    roc_curve,
    run_attacks,
    score_inversion,
    ssim,
    threshold_stats,
    tpr_at_fpr,
    train_evaluator,
    train_inclusion_shadows,
    train_shadows,
    ulira_auc,
    ulira_scores,
    untrained_copy,
    verification_error,
)
from amnesiac.attacks.inversion import median2, process
from amnesiac.cli import main
from amnesiac.data import load_dataset
from amnesiac.errors import ConfigError
from amnesiac.models import build_model
from amnesiac.training import evaluate, fit, make_optimizer
from amnesiac.unlearn.relabel import wrong_labels


# ------------------------------------------------------------------ metrics against scikit-learn
@pytest.mark.parametrize("seed", range(5))
def test_roc_and_auc_agree_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    y[:2] = [0, 1]
    s = rng.normal(size=300) + y * rng.uniform(0, 2)
    s[10:40] = np.round(s[10:40], 1)  # ties
    assert auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, thr = roc_curve(s, y)
    sk_fpr, sk_tpr, sk_thr = sk_roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thr[1:], sk_thr[1:])


@pytest.mark.parametrize("seed", range(3))
def test_tpr_at_fpr_is_the_best_feasible_point(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 500)
    s = rng.normal(size=500) + y
    for target in (0.0, 0.01, 0.1, 0.5):
        res = tpr_at_fpr(s, y, target)
        brute = max(((s[y == 1] >= t).mean(), (s[y == 0] >= t).mean()) for t in np.r_[np.inf, s]
                    if (s[y == 0] >= t).mean() <= target)
        assert res["tpr"] == pytest.approx(brute[0]) and res["fpr"] <= target + 1e-12
        assert res["true_positives"] == int((s[y == 1] >= res["threshold"]).sum())


def test_threshold_stats_balanced_accuracy_and_bootstrap():
    s = np.array([0.9, 0.8, 0.4, 0.6, 0.2, 0.1])
    y = np.array([1, 1, 1, 0, 0, 0])
    st = threshold_stats(s, y, 0.5)
    assert st["recall"] == pytest.approx(2 / 3) and st["precision"] == pytest.approx(2 / 3)
    assert st["fpr"] == pytest.approx(1 / 3)
    assert best_balanced_accuracy(s, y)["balanced_accuracy"] == pytest.approx(5 / 6)
    lo, hi = bootstrap_ci(auc, s, y, n=100)
    assert 0 <= lo <= auc(s, y) <= hi <= 1
    with pytest.raises(ConfigError, match="members and non-members"):
        auc([0.1, 0.2], [1, 1])


# ------------------------------------------------------------------ membership inference, known answers
@pytest.fixture(scope="module")
def memorised():
    """A small CNN that memorised 60 training records with flipped labels, and one retrained without them."""
    b = load_dataset("digits")
    g = torch.Generator().manual_seed(0)
    fpos = torch.randperm(len(b.train), generator=g)[:60]
    labels = b.train.targets.clone()
    labels[fpos] = wrong_labels(labels[fpos], 10, g)
    train = b.train.with_labels(labels)
    members = train.subset(fpos)
    npos = torch.randperm(len(b.test), generator=g)[:60]
    non_members = b.test.subset(npos)
    non_members = non_members.with_labels(wrong_labels(non_members.targets, 10, g))

    def trained(data):
        torch.manual_seed(0)
        m = build_model("small-cnn", in_channels=1, num_classes=10, image_size=8)
        fit(m, make_optimizer("adam", m.parameters()), data, epochs=30, batch_size=32, seed=0, progress=False)
        return m

    original, retrained = trained(train), trained(train.without_ids(members.ids))
    return b, members, non_members, npos, original, retrained


@pytest.fixture(scope="module")
def memorised_shadows(memorised, tmp_path_factory):
    return train_shadows(memorised[0].test, ShadowRecipe("small-cnn", epochs=30, batch_size=32), n=8,
                         cache_dir=tmp_path_factory.mktemp("shadows"))


def test_every_attack_detects_a_memorised_set_and_not_after_retraining(memorised, memorised_shadows):
    b, members, non_members, npos, original, retrained = memorised
    assert evaluate(original, members)["accuracy"] == 1.0 and evaluate(retrained, members)["accuracy"] < 0.2
    shadows = memorised_shadows
    report = run_attacks({"original": original, "retrained": retrained}, members, non_members, shadows=shadows,
                         non_member_pool_positions=npos.tolist(), progress=False)
    for attack, res in report.results["original"].items():
        assert res["auc"] >= 0.9, attack
    for attack, res in report.results["retrained"].items():
        assert res["auc"] <= 0.65, attack
    assert report.results["original"]["shokri-paper"]["recall"] > report.results["retrained"]["shokri-paper"]["recall"]
    assert not any(res["constant_scores"] for r in report.results.values() for res in r.values())


class _Constant(torch.nn.Module):
    """Every input gets the same logits: no attack can rank anything."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], 10)


def test_an_attack_whose_scores_are_all_equal_is_flagged(memorised):
    b, members, non_members, npos, original, retrained = memorised
    report = run_attacks({"constant": _Constant(), "original": original}, members, non_members, attacks=["loss"],
                         progress=False)
    res = report.results["constant"]["loss"]
    assert res["constant_scores"] and res["auc"] == 0.5  # a 0.50 that measured nothing, and says so
    assert not report.results["original"]["loss"]["constant_scores"]


def test_shadow_models_are_cached_and_reused(memorised, tmp_path):
    b = memorised[0]
    recipe = ShadowRecipe("small-cnn", epochs=2, batch_size=32)
    first = train_shadows(b.test, recipe, n=3, cache_dir=tmp_path, seed=4)
    again = train_shadows(b.test, recipe, n=3, cache_dir=tmp_path, seed=4)
    assert first.trained_now == 3 and again.trained_now == 0
    np.testing.assert_array_equal(first.member_masks, again.member_masks)
    for a, c in zip(first.models, again.models):
        for (ka, va), (_, vc) in zip(a.state_dict().items(), c.state_dict().items()):
            assert torch.equal(va, vc), ka
    other = train_shadows(b.test, ShadowRecipe("small-cnn", epochs=3, batch_size=32), n=1, cache_dir=tmp_path, seed=4)
    assert other.trained_now == 1  # a different recipe never reuses a stale model


def test_a_running_stage_says_which_shadow_model_trains(memorised, monkeypatch):
    # a reproduce stage's heartbeat line names the shadow model in training, not the last thing noted before
    import io

    from amnesiac.attacks import mia
    from amnesiac.utils.progress import Heartbeat

    seen = []
    real = mia._fit_shadow

    def spy(*args, **kwargs):
        seen.append(beat.note)
        return real(*args, **kwargs)

    monkeypatch.setattr(mia, "_fit_shadow", spy)
    with Heartbeat("stage", every=60, file=io.StringIO()) as beat:
        mia.note("training the target")  # what the stage said before the shadows
        train_shadows(memorised[0].test, ShadowRecipe("small-cnn", epochs=1, batch_size=32), n=2, seed=1)
    assert seen == ["training shadow model 1 of 2", "training shadow model 2 of 2"]


def test_attack_input_errors(memorised):
    b, members, non_members, _, original, _ = memorised
    with pytest.raises(ConfigError, match="need shadow models"):
        run_attacks({"m": original}, members, non_members, attacks=["lira"])
    with pytest.raises(ConfigError, match="Did you mean 'lira'"):
        run_attacks({"m": original}, members, non_members, attacks=["lria"])


# ------------------------------------------------------------------ model inversion
@pytest.fixture(scope="module")
def digits_without_3():
    """A small CNN trained on digits without any 3, an evaluator trained on all digits, and the references."""
    b = load_dataset("digits")
    without3 = b.train.subset(torch.nonzero(b.train.targets != 3).flatten())
    torch.manual_seed(0)
    model = build_model("small-cnn", in_channels=1, num_classes=10, image_size=8)
    fit(model, make_optimizer("adam", model.parameters()), without3, epochs=10, batch_size=32, seed=0, progress=False)
    evaluator = train_evaluator(b.train, "small-cnn", epochs=20)
    return b, model, evaluator, inversion_references(b.train)


@pytest.mark.parametrize("variant", ["paper", "regularised"])
def test_inversion_of_a_learned_class_is_recognised_and_of_an_unseen_class_is_not(digits_without_3, variant):
    b, model, evaluator, refs = digits_without_3
    prior = refs.prior_for(variant)  # what the experiments and the CLI give each variant

    def score(c):
        return score_inversion(invert(model, c, shape=(1, 8, 8), variant=variant, iterations=400, process_every=200,
                                      restarts=4, prior=prior), evaluator, refs)

    learned = [score(c) for c in (0, 5)]
    unseen = score(3)
    assert min(s["evaluator_accuracy"] for s in learned) >= 0.5 and unseen["evaluator_accuracy"] <= 0.25
    assert min(s["recognised"] for s in learned) >= 0.5 and unseen["recognised"] <= 0.25
    assert min(s["class_margin"] for s in learned) > 0 > unseen["class_margin"]
    assert unseen["target_model_cost"] > 0.5  # the model cannot be pushed towards a class it never saw


def test_blank_and_constant_images_score_nothing_but_real_images_of_the_class_do(digits_without_3):
    b, _, _, refs = digits_without_3
    for value in (-1.0, 0.0, 1.0):  # a blank image of any brightness is like no class at all
        blank = pixel_scores(torch.full((3, 1, 8, 8), value), 3, refs)
        assert blank["recognised"] == 0 and blank["class_margin"] == 0 and blank["nearest_real_agreement"] == 0
    flat = refs.flat_prior()  # the shapeless prior: one value, the data's mean pixel
    assert flat.shape == (1, 8, 8) and flat.unique().numel() == 1
    assert float(flat[0, 0, 0]) == pytest.approx(float(refs.means.mean()), abs=1e-6)
    assert pixel_scores(flat[None], 3, refs)["recognised"] == 0
    test3 = b.test[torch.nonzero(b.test.targets == 3).flatten()][0]  # real threes the references lack
    real = pixel_scores(test3, 3, refs)
    assert real["recognised"] >= 0.8 and real["class_margin"] > 0.03
    assert real["nearest_real_chance"] == pytest.approx(0.1, abs=0.02)
    # brightness and contrast do not change the scores (correlation), so darkening is no way to win or lose
    dim = pixel_scores(test3 * 0.3 - 0.6, 3, refs)
    assert dim["class_margin"] == pytest.approx(real["class_margin"], abs=1e-6)
    # the same threes scored as if they were sevens: not recognised
    assert pixel_scores(test3, 7, refs)["recognised"] <= 0.05


def test_the_evaluator_is_judged_against_a_never_trained_model_of_the_same_architecture(digits_without_3):
    _, model, evaluator, refs = digits_without_3
    fresh = untrained_copy(model, seed=1)
    assert type(fresh) is type(model)
    assert all(not torch.equal(a, b) for a, b in zip(fresh.parameters(), model.parameters()) if a.dim() > 1)
    assert all(torch.equal(a, b) for a, b in zip(untrained_copy(model, seed=1).parameters(), fresh.parameters()))
    kw = dict(shape=(1, 8, 8), variant="regularised", iterations=300, restarts=3, prior=refs.mean_image())
    base = invert(fresh, 0, **kw)
    sc = score_inversion(invert(model, 0, **kw), evaluator, refs, baseline=base)
    assert sc["confidence_lift"] == pytest.approx(sc["evaluator_confidence"] - sc["baseline_confidence"])
    assert sc["confidence_lift"] > 0.5 and sc["baseline_confidence"] < 0.3
    assert score_inversion(base, evaluator, refs)["recognised"] <= 0.34


def test_a_layer_that_cannot_be_reset_is_refused_for_the_never_trained_copy():
    class Scaled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, x):
            return x * self.w

    net = torch.nn.Sequential(torch.nn.Flatten(), Scaled(), torch.nn.Linear(64, 10))
    with pytest.raises(ConfigError, match="has parameters but no reset_parameters"):
        untrained_copy(net)


def test_authors_variant_starts_black_and_filters_with_a_2x2_median():
    spot = torch.full((1, 1, 6, 6), -1.0)
    spot[0, 0, 2, 3] = 1.0
    assert torch.equal(median2(spot), torch.full_like(spot, -1.0))  # one bright pixel is noise
    block = torch.full((1, 1, 6, 6), -1.0)
    block[0, 0, 2:5, 2:5] = 1.0
    assert float(median2(block)[0, 0, 3, 3]) == 1.0  # a 3x3 block keeps its inside
    torch.manual_seed(0)
    model = build_model("mlp", in_channels=1, num_classes=10, image_size=8)
    start = invert(model, 2, shape=(1, 8, 8), variant="authors", iterations=1, lr=0.0, restarts=2)
    assert float(start.images.max()) < -0.9  # lr 0: the start itself, near black
    moved = invert(model, 2, shape=(1, 8, 8), variant="authors", iterations=50, process_every=25, restarts=1)
    with torch.no_grad():
        assert moved.costs[0] < 1 - float(torch.softmax(model(start.images[:1]), 1)[0, 2])
    with pytest.raises(ConfigError, match="prior image must have the inverted shape"):
        invert(model, 2, shape=(1, 8, 8), variant="regularised", prior=torch.zeros(1, 4, 4))


def test_original_variant_stops_when_the_cost_stops_improving():
    torch.manual_seed(0)
    model = build_model("mlp", in_channels=1, num_classes=10, image_size=8)
    inv = invert(model, 1, shape=(1, 8, 8), variant="original", iterations=5000, patience=20, restarts=2)
    assert max(inv.iterations) < 5000 and inv.images.shape == (2, 1, 8, 8)
    assert float(inv.images.min()) >= -1 and float(inv.images.max()) <= 1


def test_ssim_and_processing():
    x = torch.rand(1, 8, 8) * 2 - 1
    assert ssim(x, x) == pytest.approx(1.0)
    g = torch.Generator().manual_seed(1)
    small, big = torch.randn(1, 8, 8, generator=g) * 0.05, torch.randn(1, 8, 8, generator=g) * 0.8
    assert 1.0 > ssim(x, x + small) > ssim(x, x + big)
    assert ssim(x, x + big) == pytest.approx(ssim(x + big, x))
    y = process(x[None])
    assert y.shape == (1, 1, 8, 8) and float(y.abs().max()) <= 1.0


# ------------------------------------------------------------------ CLI
def test_cli_mia_and_inversion(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", "--epochs", "2", "--record", "none", "--out", run, "--no-progress"]) == 0
    capsys.readouterr()
    code = main(["attack", "mia", run, "--target-ids", "0-39", "--attacks", "loss,logreg,lira", "--shadows", "2",
                 "--shadow-epochs", "1", "--reference", run, "--out", str(tmp_path / "a"), "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "TPR at FPR <= 1% (reached)" in out and "reference" in out and "is the TPR at FPR 0" in out
    saved = json.loads((tmp_path / "a" / "mia.json").read_text())
    assert saved["members"] == 40 and set(saved["results"]) == {"run", "reference"}
    code = main(["attack", "inversion", run, "--class", "4", "--iterations", "50", "--restarts", "2",
                 "--variant", "regularised", "--out", str(tmp_path / "a"), "--no-progress"])
    assert code == 0
    assert (tmp_path / "a" / "inversion-class4.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "never trained" in out and "recognised" in out and "class margin" in out
    saved = json.loads((tmp_path / "a" / "inversion.json").read_text())
    assert set(saved["scores"]) == {"never trained", "run"} and "confidence_lift" in saved["scores"]["run"]
    assert main(["attack", "mia", run, "--no-progress"]) == 2
    assert "exactly one way" in capsys.readouterr().err


# ------------------------------------------------------------------ defects that made the evidence weak
class _Scalar(torch.nn.Module):
    """A 'model' whose logit for class 0 is ``scale`` times the first pixel (in [-1, 1]); other logits 0."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x[:, 0, 0, 0] * self.scale
        return torch.stack([v] + [torch.zeros_like(v)] * 9, 1)


def _scalar_data(values: np.ndarray, id0: int = 0):
    from amnesiac.data import ArrayDataset

    imgs = np.zeros((len(values), 1, 2, 2), dtype=np.uint8)
    imgs[:, 0, 0, 0] = values
    return ArrayDataset(imgs, np.zeros(len(values), dtype=np.int64), np.arange(id0, id0 + len(values)), max_value=255)


def test_lira_scores_do_not_underflow_into_ties_far_in_the_tail():
    from amnesiac.attacks.mia import ShadowSet, lira_scores, outputs

    rng = np.random.default_rng(0)
    members, non_members = _scalar_data(rng.integers(0, 256, 80)), _scalar_data(rng.integers(0, 256, 80), 1000)
    target = _Scalar(40.0)  # far outside what every shadow model says: |z| runs to thousands
    shadows = ShadowSet([_Scalar(1 + 0.01 * k) for k in range(8)], np.zeros((8, 4), dtype=bool), members)
    s, y = lira_scores(target, members, non_members, shadows)
    assert np.isfinite(s).all()
    # the score must rank as the test statistic z does; the old 0.5 * (1 + erf(z)) tied most of them at 0 or 1
    z = []
    for data in (members, non_members):
        shadow_phi = np.stack([outputs(net, data).scaled_logit for net in shadows.models])
        z.append((outputs(target, data).scaled_logit - shadow_phi.mean(0)) / np.maximum(shadow_phi.std(0), 1e-3))
    z = np.concatenate(z)
    assert np.abs(z).min() > 8  # every example is in the region where the old score underflowed
    assert auc(s, y) == pytest.approx(roc_auc_score(y, z), abs=1e-9)
    assert len(np.unique(s)) == len(np.unique(z))


def test_logreg_is_not_weaker_than_the_loss_it_is_fitted_on():
    from amnesiac.attacks.mia import logreg_scores, loss_scores

    rng = np.random.default_rng(1)
    # members a little more confident than non-members, with the heavy tail of real losses
    m = np.clip(rng.normal(170, 50, 300), 0, 255).astype(np.uint8)
    n = np.clip(rng.normal(150, 60, 300), 0, 255).astype(np.uint8)
    members, non_members, model = _scalar_data(m), _scalar_data(n, 1000), _Scalar(12.0)
    loss_auc = auc(*loss_scores(model, members, non_members))
    assert loss_auc > 0.55
    assert auc(*logreg_scores(model, members, non_members)) >= loss_auc - 0.02


def test_non_finite_scores_are_refused_not_scored_as_ties():
    with pytest.raises(ConfigError, match="infinite"):
        auc([float("-inf"), float("-inf"), 0.1], [1, 0, 0])


def test_the_stronger_shadow_attack_beats_chance_on_an_overfit_model(memorised, memorised_shadows):
    b, members, non_members, npos, original, retrained = memorised
    shadows = memorised_shadows
    report = run_attacks({"original": original, "retrained": retrained}, members, non_members, shadows=shadows,
                         attacks=["shadow", "shokri"], non_member_pool_positions=npos.tolist(), progress=False)
    assert set(report.results["original"]) == {"shadow", "shokri-paper"}  # "shokri" names the paper's attack
    assert report.results["original"]["shadow"]["auc"] >= 0.9 >= report.results["retrained"]["shadow"]["auc"] + 0.25


def test_attack_target_class_takes_the_records_the_run_trained_on(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--limit-class", "3:12", "--out", str(out),
                 "--record", "none", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["attack", "mia", str(out), "--target-class", "3", "--attacks", "loss", "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["members"] == 12  # not the 146 threes of the whole training split
    code = main(["attack", "mia", str(out), "--target-ids", "99999", "--attacks", "loss", "--no-progress"])
    assert code == 2 and "not records this run trained on" in capsys.readouterr().err


def test_limit_class_keeps_a_seeded_random_sample_not_the_first_records():
    from amnesiac.run import TrainConfig, select_training_data

    train = load_dataset("digits").train
    threes = np.sort(train.ids_of_class(3).numpy())
    picks = [set(select_training_data(train, TrainConfig(limit_class={3: 20}, seed=s)).ids_of_class(3).tolist())
             for s in (0, 1)]
    assert picks[0] != picks[1] and all(len(p) == 20 for p in picks)
    assert picks[0] != set(threes[:20].tolist())
    legacy = TrainConfig.from_dict({**TrainConfig(limit_class={3: 20}).to_dict(), "limit_class_select": "first"})
    assert set(select_training_data(train, legacy).ids_of_class(3).tolist()) == set(threes[:20].tolist())


def test_attack_options_are_declared_and_checked_before_any_work():
    from amnesiac.attacks import ATTACK_OPTIONS, check_attack_options
    from amnesiac.errors import ConfigError

    assert set(ATTACK_OPTIONS) == set(__import__("amnesiac.names", fromlist=["ATTACKS"]).ATTACKS)
    assert check_attack_options(["logreg", "shokri"], {"shokri": {"attack_epochs": 5}}) == {"shokri-paper": {"attack_epochs": 5}}
    with pytest.raises(ConfigError, match="Did you mean 'folds'"):
        check_attack_options(["logreg"], {"logreg": {"fold": 3}})
    with pytest.raises(ConfigError, match="must be an integer >= 2"):
        check_attack_options(["logreg"], {"logreg": {"folds": 1}})
    with pytest.raises(ConfigError, match="not among the attacks run"):
        check_attack_options(["loss"], {"lira": {"min_out": 2}})
    with pytest.raises(ConfigError, match="has no option"):
        check_attack_options(["loss"], {"loss": {"threshold": 0.5}})


def test_run_attacks_passes_an_attacks_options_on():
    from amnesiac.attacks import run_attacks
    from amnesiac.data import load_dataset
    from amnesiac.errors import ConfigError
    from amnesiac.models import build_model

    bundle = load_dataset("digits")
    model = build_model("small-cnn", in_channels=1, num_classes=10, image_size=8)
    members, non_members = bundle.train.subset(list(range(40))), bundle.test.subset(list(range(40)))
    rep = run_attacks({"m": model}, members, non_members, attacks=("logreg",), options={"logreg": {"folds": 4}})
    assert 0.0 <= rep.results["m"]["logreg"]["auc"] <= 1.0
    with pytest.raises(ConfigError, match="must be an integer >= 2"):  # refused, not ignored
        run_attacks({"m": model}, members, non_members, attacks=("logreg",), options={"logreg": {"folds": 1.5}})


def test_ulira_tells_the_original_from_a_retrain_record_by_record_and_a_second_retrain_not(memorised):
    b, members, non_members, npos, original, retrained = memorised
    train = b.train.without_ids(members.ids)  # the retained records: every shadow model trains on all of them
    shadows = train_inclusion_shadows(train, members, ShadowRecipe("small-cnn", epochs=30, batch_size=32), n=4, seed=3)
    assert (shadows.member_masks.sum(0) == 2).all()  # every deleted record is IN exactly half of the shadows
    torch.manual_seed(0)
    other = build_model("small-cnn", in_channels=1, num_classes=10, image_size=8)
    fit(other, make_optimizer("adam", other.parameters()), train, epochs=30, batch_size=32, seed=7, progress=False)
    assert ulira_auc(original, retrained, shadows) >= 0.9
    assert ulira_auc(retrained, retrained, shadows) == 0.5
    assert ulira_auc(other, retrained, shadows) <= 0.7  # another retrain (other data order) is not told apart
    assert ulira_scores(original, shadows).mean() > ulira_scores(retrained, shadows).mean()
    assert verification_error(retrained, retrained) == 0.0 < verification_error(other, retrained)


def test_ulira_shadows_keep_a_subjects_records_together_and_refuse_odd_counts():
    b = load_dataset("digits")
    candidates = b.train.subset(range(12))
    groups = [candidates.ids[k:k + 4].tolist() for k in (0, 4, 8)]
    shadows = train_inclusion_shadows(b.train.subset(range(12, 60)), candidates,
                                      ShadowRecipe("small-cnn", epochs=1, batch_size=16), n=4, groups=groups)
    masks = shadows.member_masks
    assert masks.shape == (4, 12) and (masks.sum(0) == 2).all()
    for k in (0, 4, 8):
        assert (masks[:, k:k + 4] == masks[:, [k]]).all()  # a subject is in or out as a whole
    with pytest.raises(ConfigError, match="even number"):
        train_inclusion_shadows(b.train.subset(range(12, 60)), candidates, ShadowRecipe("small-cnn", epochs=1), n=3)
    with pytest.raises(ConfigError, match="exactly one group"):
        train_inclusion_shadows(b.train.subset(range(12, 60)), candidates, ShadowRecipe("small-cnn", epochs=1), n=2,
                                groups=groups[:2])


def test_the_contrast_aware_inversion_verdict_agrees_with_labels_given_by_eye():
    import csv
    from pathlib import Path

    from amnesiac.attacks.inversion import class_visibility

    folder = Path(__file__).parent / "data" / "inversions"
    data = np.load(folder / "images.npz")
    images, means = torch.from_numpy(data["images"]), torch.from_numpy(data["class_means"])
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(images) >= 60
    said = np.array([bool(class_visibility(images[[k]], int(r["target"]), means)["visible"][0])
                     for k, r in enumerate(rows)])
    eye = np.array([r["class_visible"] == "yes" for r in rows])
    assert eye.sum() >= 10 and (~eye).sum() >= 10  # both verdicts are in the labels, and both are given
    assert said.any() and not said.all()
    assert (said == eye).mean() >= 0.9, [r["index"] for r, a, b in zip(rows, said, eye) if a != b]
    controls = [k for k, r in enumerate(rows) if r["source"].startswith(("ghost x0.05", "ghost x0.1", "noise"))]
    assert controls and not said[controls].any()  # faint ghosts and structured noise never count as the class
    # the older per-image rule (nearest real image of the class and a positive margin) took faint ghosts for it
    ghosts = [k for k, r in enumerate(rows) if r["source"].startswith("ghost x0.1")]
    assert all(class_visibility(images[[k]], int(rows[k]["target"]), means)["margin"][0] > 0 for k in ghosts)
