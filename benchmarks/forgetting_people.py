"""Forgetting people from a LoRA fine-tune of a small language model, against retraining the adapter.

    python benchmarks/forgetting_people.py             # 150 people, 3 seeds (about an hour on 2 cores)
    python benchmarks/forgetting_people.py --seeds 1   # one seed
    python benchmarks/forgetting_people.py --quick     # 24 people, 1 seed, a few epochs: keeps the script working

Setting (amnesiac.data.people, amnesiac.experiments.people): per seed, a small Llama-architecture model (4 layers,
hidden 128, a word-level vocabulary; a transformers config, nothing downloaded) is pretrained on 300 fictitious
people; a LoRA adapter (rank 16 on every projection) is then fine-tuned through the Hugging Face Trainer on 150
other people (a biography and four question-answer pairs each: 750 records; 25 epochs), three times: with random
batches of 10 and an every-step ledger, and twice with batches confined to one person (subject-aligned shards, one
per person) and a shard ledger, with AdamW's beta1 at 0.9 and at 0.7 (SHARD_RUNS). 100 more people are never
trained on.

Scenarios: one person; 1% of the people; ten people forgotten one after another (ten requests). Methods, each
from the fine-tuned adapter (the shard rows from the shard-trained one): amnesiac on the step ledger and on the
person shards, each with and without a recorded repair (as many optimizer steps on retained people as the
subtracted updates held); the naive fine-tune on retained people and NegGrad+ (beta 0.9, lr 1e-3; untuned), each
with the step-ledger repair's step budget; and retraining the adapter from the same base without the people (the
reference; random batches). Columns: exact-match of the forgotten people's facts and of retained people's (and
each one's gap to the retrained adapter); loss / zlib / Min-K% membership AUC of the forgotten people's records
against the never-trained people's; time against the retrain; ledger bytes against the adapter's bytes.
Results: benchmarks/results/forgetting_people.json (or forgetting_people_quick.json); ``--doc`` writes the docs
section and the plot (``--render JSON`` does that from a saved result).
"""

from __future__ import annotations

import argparse
import copy
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import dir_bytes, save, write_section  # noqa: E402

from amnesiac import forget_records  # noqa: E402
from amnesiac.data.people import make_people  # noqa: E402
from amnesiac.experiments.people import (  # noqa: E402
    exact_match,
    finetune,
    membership_auc,
    naive,
    neggrad_plus,
    person_shards,
    pretrain_base,
    repair,
    with_adapter,
)
from amnesiac.ledger import LedgerStore, tracked_state  # noqa: E402

#: the shard-ledger fine-tunes: AdamW's beta1 for each. With one optimizer step per visit of a person's shard,
#: momentum carries a person's gradient into the next people's steps, whose sums a subtraction does not touch;
#: a lower beta1 keeps more of it in the person's own sum.
SHARD_RUNS = {"person shards": 0.9, "person shards, Adam beta1 0.7": 0.7}

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
BEGIN, END = "<!-- forgetting-people:begin -->", "<!-- forgetting-people:end -->"
PLOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "forgetting_people.png"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def measure(model: torch.nn.Module, data: Any, forget: list, retained: list) -> dict[str, float]:
    out = {"em_forget": exact_match(model, data, forget), "em_retained": exact_match(model, data, retained),
           "em_unseen": exact_match(model, data, data.unseen)}
    out.update({f"forget_{k}": v for k, v in membership_auc(model, data, forget, data.unseen).items()})
    return out


def amnesiac_rows(kind: str, model: torch.nn.Module, ledger: Path, data: Any, requests: list[list], retained: list,
                  *, seed: int, epochs: int, work: Path, shards: Any) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Forget each request in turn with and without repair; returns both rows and the repair's step budget."""
    rows, budget = {}, 0
    for with_repair in (False, True):
        m = copy.deepcopy(model)
        led = work / f"copy-{kind}-{int(with_repair)}"
        shutil.copytree(ledger, led)
        seconds, subtract, reverted, steps_total = 0.0, 0.0, 0, 0
        for k, people in enumerate(requests):
            ids = [i for p in people for i in data.ids_of(p)]
            t0 = time.perf_counter()
            done = forget_records(m, led, ids, force=True)
            subtract += time.perf_counter() - t0
            reverted += len(done.receipt.steps_reverted)
            if with_repair:
                held = len(done.receipt.steps_reverted) * (epochs if shards is not None else 1)
                seconds += repair(m, data, retained, led, steps=held, seed=seed * 100 + k,
                                  shards=shards.restricted([i for p in retained for i in data.ids_of(p)])
                                  if shards is not None else None)
                steps_total += held
        seconds += subtract
        if with_repair:
            budget = steps_total
        name = f"amnesiac ({kind}){' + repair' if with_repair else ''}"
        rows[name] = {"seconds": seconds, "subtract_seconds": subtract, "rows_reverted": reverted,
                      "repair_steps": steps_total, "ledger_bytes": dir_bytes(ledger), **measure(m, data, *_sets(requests, retained))}
        shutil.rmtree(led)
    return rows, {}, budget


def _sets(requests: list[list], retained: list) -> tuple[list, list]:
    return [p for r in requests for p in r], retained


def run_seed(seed: int, *, n_train: int, n_base: int, n_unseen: int, epochs: int, base_epochs: int,
             work: Path) -> dict[str, Any]:
    t_seed = time.perf_counter()
    data = make_people(seed=seed, n_train=n_train, n_base=n_base, n_unseen=n_unseen)
    base = pretrain_base(data, seed=seed, epochs=base_epochs, log=log)
    log(f"seed {seed}: base model on {n_base} people, exact-match {exact_match(base, data, data.base[:50]):.2f} on "
        f"50 of them, {exact_match(base, data, data.train):.3f} on the fine-tune's people")
    step_model = with_adapter(base, seed=seed)
    adapter_bytes = sum(v.numel() * 4 for v in tracked_state(step_model).values())
    t_step = finetune(step_model, data, data.train, seed=seed, workdir=work / "ft-steps", ledger=work / "steps",
                      epochs=epochs)
    shards = person_shards(data, data.train)
    shard_models, t_shards = {}, {}
    for label, beta1 in SHARD_RUNS.items():
        shard_models[label] = with_adapter(base, seed=seed)
        t_shards[label] = finetune(shard_models[label], data, data.train, seed=seed, workdir=work / f"ft-{beta1}",
                                   ledger=work / label, shards=shards, epochs=epochs, adam_beta1=beta1)
    ledgers = {}
    for label in ("every step", *SHARD_RUNS):
        with LedgerStore.open(work / ("steps" if label == "every step" else label)) as s:
            ledgers[label] = {"rows": s.summary()["steps"],
                              "bytes": dir_bytes(work / ("steps" if label == "every step" else label))}
    log(f"seed {seed}: fine-tuned in {t_step:.0f} s (every-step ledger), "
        + ", ".join(f"{t:.0f} s ({k})" for k, t in t_shards.items()) + "; exact-match "
        + " / ".join(f"{exact_match(m, data, data.train):.3f}" for m in (step_model, *shard_models.values())))
    rng = random.Random(seed)
    order = rng.sample(range(n_train), n_train)
    pct = max(1, round(0.01 * n_train))
    scenarios = {"one person": [[data.train[order[0]]]],
                 "1% of the people": [[data.train[k] for k in order[1:1 + pct]]],
                 "ten people, one after another": [[data.train[k]] for k in order[1 + pct:11 + pct]]}
    out: dict[str, Any] = {"fine_tune_seconds": {"every step": t_step, **t_shards},
                           "adapter_bytes": adapter_bytes, "ledgers": ledgers, "scenarios": {}}
    for name, requests in scenarios.items():
        forget, gone = _sets(requests, [])[0], {p.name for r in requests for p in r}
        retained = [p for p in data.train if p.name not in gone]
        rows: dict[str, Any] = {"original (every step)": {"seconds": 0.0, **measure(step_model, data, forget, retained)}}
        rows.update({f"original ({label})": {"seconds": 0.0, **measure(m, data, forget, retained)}
                     for label, m in shard_models.items()})
        retrained = with_adapter(base, seed=seed)
        t_retrain = finetune(retrained, data, data.train, seed=seed, workdir=work / "retrain",
                             exclude=[i for p in forget for i in data.ids_of(p)], epochs=epochs)
        rows["retrained adapter"] = {"seconds": t_retrain, **measure(retrained, data, forget, retained)}
        step_rows, _, budget = amnesiac_rows("every step", step_model, work / "steps", data, requests, retained, seed=seed,
                                             epochs=epochs, work=work, shards=None)
        rows.update(step_rows)
        for label, m in shard_models.items():
            shard_rows, _, _ = amnesiac_rows(label, m, work / label, data, requests, retained, seed=seed,
                                             epochs=epochs, work=work, shards=shards)
            rows.update(shard_rows)
        per_request = max(1, budget // len(requests))
        for method, fn in (("naive fine-tune", "naive"), ("NegGrad+", "neggrad")):
            m = copy.deepcopy(step_model)
            seconds = 0.0
            done: list = []
            for k, people in enumerate(requests):
                done += people
                keep = [p for p in data.train if p.name not in {q.name for q in done}]
                if fn == "naive":
                    seconds += naive(m, data, keep, steps=per_request, seed=seed * 100 + k)
                else:
                    seconds += neggrad_plus(m, data, people, keep, steps=per_request, seed=seed * 100 + k)
            rows[method] = {"seconds": seconds, "optimizer_steps": per_request * len(requests),
                            **measure(m, data, forget, retained)}
        ref = rows["retrained adapter"]
        for row in rows.values():
            row["time_vs_retrain"] = row["seconds"] / t_retrain
            for key in ("em_forget", "em_retained", "forget_loss_auc", "forget_zlib_auc", "forget_min_k_auc"):
                row[f"{key}_gap"] = row[key] - ref[key]
        out["scenarios"][name] = {"people": [p.name for p in forget], "requests": len(requests), "rows": rows}
        log(f"seed {seed}, {name}: retrain {t_retrain:.0f} s; " + "; ".join(
            f"{m}: EM forget {r['em_forget']:.2f} retained {r['em_retained']:.3f} loss AUC {r['forget_loss_auc']:.2f} "
            f"time {r['time_vs_retrain']:.4f}" for m, r in rows.items()))
    out["seconds"] = time.perf_counter() - t_seed
    return out


def summarise(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation over seeds of every row's numbers."""
    summary: dict[str, Any] = {}
    for scenario in seeds[0]["scenarios"]:
        summary[scenario] = {}
        for method in seeds[0]["scenarios"][scenario]["rows"]:
            rows = [s["scenarios"][scenario]["rows"][method] for s in seeds]
            summary[scenario][method] = {
                key: {"mean": statistics.fmean(r[key] for r in rows),
                      "sd": statistics.stdev([r[key] for r in rows]) if len(rows) > 1 else 0.0,
                      "values": [r[key] for r in rows]}
                for key in rows[0] if isinstance(rows[0][key], (int, float))}
    return summary


SCENARIO_ORDER = ["one person", "1% of the people", "ten people, one after another"]


def _row_order(method: str) -> tuple[int, str]:
    """The originals, the retrained reference, amnesiac's rows, then the other methods."""
    rank = (0 if method.startswith("original") else 1 if method == "retrained adapter" else
            2 if method.startswith("amnesiac") else 3)
    return rank, method


def render(result: dict[str, Any]) -> str:
    cmd = result["command"]
    s = result["summary"]
    cfg = result["config"]
    lines = [BEGIN, "",
             f"`{cmd}` ({len(result['seeds'])} seeds, 2 cores; benchmarks/results/forgetting_people.json). "
             f"{cfg['n_train']} fictitious people fine-tuned into a LoRA adapter ({cfg['epochs']} epochs), "
             f"{cfg['n_unseen']} never trained on; mean ± sd over seeds; a gap is the row minus the retrained "
             "adapter, in points for exact-match (EM).", ""]
    adapter = statistics.fmean(x["adapter_bytes"] for x in result["seeds"])
    for kind in result["seeds"][0]["ledgers"]:
        rows = statistics.fmean(x["ledgers"][kind]["rows"] for x in result["seeds"])
        byts = statistics.fmean(x["ledgers"][kind]["bytes"] for x in result["seeds"])
        lines.append(f"- Ledger, {kind}: {rows:.0f} stored updates, {byts / 2**20:.1f} MiB, "
                     f"{byts / rows / adapter:.3f} x the adapter's {adapter / 2**10:.0f} KiB per stored update.")
    lines.append("")
    for scenario in sorted(s, key=lambda k: (SCENARIO_ORDER.index(k) if k in SCENARIO_ORDER else 9, k)):
        methods = {m: s[scenario][m] for m in sorted(s[scenario], key=_row_order)}
        lines += [f"**{scenario}**", "",
                  "| method | EM forgotten (gap) | EM retained (gap) | loss / zlib / Min-K% AUC, forgotten (gap of loss) "
                  "| time / retrain |", "|---|---|---|---|---|"]
        for method, r in methods.items():
            lines.append(
                f"| {method} | {100 * r['em_forget']['mean']:.1f} ± {100 * r['em_forget']['sd']:.1f} "
                f"({100 * r['em_forget_gap']['mean']:+.1f}) | {100 * r['em_retained']['mean']:.1f} ± "
                f"{100 * r['em_retained']['sd']:.1f} ({100 * r['em_retained_gap']['mean']:+.1f}) | "
                f"{r['forget_loss_auc']['mean']:.2f} / {r['forget_zlib_auc']['mean']:.2f} / "
                f"{r['forget_min_k_auc']['mean']:.2f} ({r['forget_loss_auc_gap']['mean']:+.2f}) | "
                f"{r['time_vs_retrain']['mean']:.4f} |")
        lines.append("")
    lines += ["![forgetting people](images/forgetting_people.png)", "", END]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["summary"]
    scenarios = sorted(s, key=lambda k: (SCENARIO_ORDER.index(k) if k in SCENARIO_ORDER else 9, k))
    fig, axes = plt.subplots(1, len(s), figsize=(5 * len(s), 5.2), sharey=True)
    for ax, scenario in zip(axes, scenarios):
        for method in sorted(s[scenario], key=_row_order):
            r = s[scenario][method]
            if method.startswith("original"):
                continue
            x, y = r["time_vs_retrain"]["mean"], 100 * r["em_forget_gap"]["mean"]
            ax.errorbar(max(x, 1e-4), y, yerr=100 * r["em_forget_gap"]["sd"], fmt="o", capsize=3, label=method)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_title(scenario)
        ax.set_xlabel("time / retraining the adapter")
    axes[0].set_ylabel("EM of the forgotten facts minus the retrained adapter's (points)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)  # below the panels: no point hidden
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"saved {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--doc", action="store_true", help="write the docs section and the plot")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--render", type=Path, default=None, metavar="JSON",
                    help="write the docs section and the plot from a saved result, running nothing")
    args = ap.parse_args(argv)
    if args.render is not None:
        import json

        result = json.loads(args.render.read_text())
        plot(result, PLOT)
        write_section(DOC, BEGIN, END, render(result), "Forgetting people from a LoRA fine-tune")
        return 0
    if args.seeds < 1 or args.seeds > 10:
        ap.error(f"--seeds must be from 1 to 10, got {args.seeds}")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    config = ({"n_train": 24, "n_base": 40, "n_unseen": 12, "epochs": 3, "base_epochs": 3} if args.quick else
              {"n_train": 150, "n_base": 300, "n_unseen": 100, "epochs": 25, "base_epochs": 20})
    seeds = [1] if args.quick else list(range(args.seeds))
    per_seed: list[dict[str, Any]] = []
    command = "python benchmarks/forgetting_people.py" + (" --quick" if args.quick else
                                                         f" --seeds {args.seeds}" if args.seeds != 3 else "")
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="amnesiac-people-") as tmp:
            per_seed.append(run_seed(seed, work=Path(tmp), **config))
        result = {"command": command, "config": config, "seeds": per_seed, "summary": summarise(per_seed),
                  "complete": len(per_seed) == len(seeds)}  # saved after every seed: a cut-short run keeps its seeds
        save("forgetting_people_quick" if args.quick else "forgetting_people", result, path=args.out)
    if args.doc:
        plot(result, PLOT)
        write_section(DOC, BEGIN, END, render(result), "Forgetting people from a LoRA fine-tune")
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
