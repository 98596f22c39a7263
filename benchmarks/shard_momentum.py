"""Which part of a person's effect does a shard sum hold? Visit sums against momentum-attributed sums.

    python benchmarks/shard_momentum.py            # 40 people, 20 epochs, 8 people forgotten one at a time
    python benchmarks/shard_momentum.py --quick    # 8 people, 3 epochs: keeps the script working

A shard ledger stores, per shard, the sum of the updates of the steps that drew from it (its *visits*). With a
momentum optimizer and one step per visit (a person's five records are one batch), that sum holds only part of
what the person's gradients did: AdamW's first moment carries each gradient into the following steps, which
belong to other people. This script trains a LoRA adapter on the fictitious people of amnesiac.data.people in its
own loop (AdamW, no weight decay, one person per step, as amnesiac.experiments.people.finetune does through the
Trainer) and keeps two accountings of the same run side by side:

- visit sums: each step's update added to the sum of the shard it drew from (what a shard ledger stores now);
- momentum-attributed sums: each step's update split over the shards whose gradients are in AdamW's first moment,
  in proportion to their share of it (the step's update is the moment times a per-weight factor, so the split is
  exact); what the tracked shares do not explain (rounding) goes to the step's own shard.

Both add up to the adapter's whole change. Then each of 8 people is forgotten alone, from a copy, by subtracting
their shard's sum, with no repair and with a short repair (one retained person per step, AdamW lr 1e-3 with a
warmup): the person's exact-match and the other people's, against an adapter retrained without the 8 people.
Results: benchmarks/results/shard_momentum.json (or shard_momentum_quick.json).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save  # noqa: E402

from amnesiac.data.people import make_people  # noqa: E402
from amnesiac.experiments import people as P  # noqa: E402


def train_with_both_accountings(model: torch.nn.Module, data: Any, *, epochs: int, beta1: float, seed: int,
                                lr: float = 3e-3) -> tuple[dict[int, dict], dict[int, dict], float]:
    """Train the adapter, one person per step; returns (visit sums, attributed sums, the largest gap between
    either accounting's total and the adapter's change)."""
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW(list(params.values()), lr=lr, betas=(beta1, 0.999), weight_decay=0.0)
    n = len(data.train)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / (epochs * n)))
    ds = data.dataset(data.train)
    groups = _groups(data, ds)
    zeros = {k: torch.zeros_like(p) for k, p in params.items()}
    visit = {s: copy.deepcopy(zeros) for s in range(n)}
    attributed = {s: copy.deepcopy(zeros) for s in range(n)}
    moments: dict[int, dict[str, torch.Tensor]] = {}  # shard -> its share of the first moment
    start = {k: p.detach().clone() for k, p in params.items()}
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for s in torch.randperm(n, generator=g).tolist():
            b = groups[s]
            out = model(input_ids=ds.input_ids[b], attention_mask=ds.mask[b], labels=ds.labels[b])
            opt.zero_grad()
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
            before = _track_moments(moments, s, params, beta1)
            opt.step()
            schedule.step()
            _attribute(moments, s, params, before, opt, visit, attributed)
    model.eval()
    gap = max(float((p.detach() - start[k] - sum(sums[s][k] for s in range(n))).abs().max())
              for sums in (visit, attributed) for k, p in params.items())
    return visit, attributed, gap


def _groups(data: Any, ds: Any) -> list[torch.Tensor]:
    """Each person's positions in ``ds`` (the training people's dataset): one batch per person."""
    position = {int(i): k for k, i in enumerate(ds.ids.tolist())}
    return [torch.tensor([position[i] for i in data.ids_of(p)]) for p in data.train]


@torch.no_grad()
def _track_moments(moments: dict[int, dict], shard: int, params: dict, beta1: float) -> dict[str, torch.Tensor]:
    """Decay every shard's share of the first moment and add this step's (clipped) gradient to its shard's, as
    AdamW does to the moment itself; returns the weights before the step."""
    for share in moments.values():
        for t in share.values():
            t.mul_(beta1)
    own = moments.setdefault(shard, {k: torch.zeros_like(p) for k, p in params.items()})
    for k, p in params.items():
        own[k].add_(p.grad, alpha=1 - beta1)
    return {k: p.detach().clone() for k, p in params.items()}


@torch.no_grad()
def _attribute(moments: dict[int, dict], shard: int, params: dict, before: dict, opt: Any,
               visit: dict, attributed: dict) -> None:
    for k, p in params.items():
        delta = p.detach() - before[k]
        visit[shard][k] += delta
        m = opt.state[p]["exp_avg"]
        known = m.abs() > 1e-12
        factor = torch.where(known, delta / torch.where(known, m, torch.ones_like(m)), torch.zeros_like(m))
        rest = delta.clone()
        for j, share in moments.items():
            part = factor * share[k]
            attributed[j][k] += part
            rest -= part
        attributed[shard][k] += rest
    for j in [j for j, share in moments.items() if j != shard and all(float(t.abs().max()) < 1e-9 for t in share.values())]:
        del moments[j]  # a share this small no longer moves anything


def subtract(model: torch.nn.Module, sums: dict[str, torch.Tensor]) -> torch.nn.Module:
    out = copy.deepcopy(model)
    with torch.no_grad():
        for k, p in out.named_parameters():
            if k in sums:
                p -= sums[k]
    return out


def repair(model: torch.nn.Module, ds: Any, groups: list[torch.Tensor], keep: list[int], steps: int,
           seed: int) -> None:
    """A short fine-tune on retained people, one person per step (AdamW lr 1e-3, warmup)."""
    if steps <= 0:
        return
    optimizer, schedule = P._short_run_optimizer(model, 1e-3, steps)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        b = groups[keep[int(torch.randint(len(keep), (1,), generator=g))]]
        out = model(input_ids=ds.input_ids[b], attention_mask=ds.mask[b], labels=ds.labels[b])
        P._step(model, out.loss, optimizer, schedule)
    model.eval()


def run(n: int, epochs: int, forgotten: int, repairs: list[int], seed: int, beta1: float) -> dict[str, Any]:
    data = make_people(seed=seed, n_train=n, n_base=120, n_unseen=20)
    base = P.pretrain_base(data, seed=seed, epochs=20)
    model = P.with_adapter(base, seed=seed)
    t0 = time.perf_counter()
    visit, attributed, gap = train_with_both_accountings(model, data, epochs=epochs, beta1=beta1, seed=seed)
    train_s = time.perf_counter() - t0
    retrained = P.with_adapter(base, seed=seed)
    with tempfile.TemporaryDirectory(prefix="amnesiac-shard-momentum-") as work:
        P.finetune(retrained, data, data.train, seed=seed, workdir=work,
                   exclude=[i for p in data.train[:forgotten] for i in data.ids_of(p)], epochs=epochs)
    others = data.train[forgotten:]
    out: dict[str, Any] = {"train_s": train_s, "sums_add_up_within": gap, "steps": epochs * n,
                           "em_train": P.exact_match(model, data, data.train),
                           "em_others_original": P.exact_match(model, data, others),
                           "retrained": {"em_forgotten": P.exact_match(retrained, data, data.train[:forgotten]),
                                         "em_others": P.exact_match(retrained, data, others)}, "rows": {}}
    ds = data.dataset(data.train)
    groups = _groups(data, ds)
    for name, sums in (("visit sums", visit), ("momentum-attributed sums", attributed)):
        for steps in repairs:
            ems, kept = [], []
            for s in range(forgotten):
                m = subtract(model, sums[s])
                repair(m, ds, groups, [q for q in range(n) if q != s], steps, seed=100 + s)
                ems.append(P.exact_match(m, data, [data.train[s]]))
                kept.append(P.exact_match(m, data, others))
            out["rows"][f"{name}, repair {steps} steps"] = {"em_forgotten": statistics.fmean(ems),
                                                           "em_others": statistics.fmean(kept),
                                                           "em_forgotten_each": ems}
            print(f"{name}, repair {steps}: forgotten {statistics.fmean(ems):.3f}, others {statistics.fmean(kept):.3f}",
                  flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    config = ({"n": 8, "epochs": 3, "forgotten": 2, "repairs": [0, 4], "seed": 0, "beta1": 0.9} if args.quick else
              {"n": 40, "epochs": 20, "forgotten": 8, "repairs": [0, 20, 60], "seed": 0, "beta1": 0.9})
    result = {"command": "python benchmarks/shard_momentum.py" + (" --quick" if args.quick else ""), "config": config,
              **run(**config)}
    save("shard_momentum_quick" if args.quick else "shard_momentum", result, path=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
