#!/usr/bin/env bash
# A short paper-profile check on a GPU machine: the paper's ResNet18 on 28x28 images (Fashion-MNIST
# files in $1), the amnesiac setting (class 3 kept to its first 100 examples, a watch-list ledger of the
# steps that hold one), then the deletion request, timed. Prints throughput and accuracy before/after.
#   bash benchmarks/gpu_check.sh DATA_DIR OUT_DIR [EPOCHS] [MODEL]
set -euo pipefail
data="$1"; out="$2"; epochs="${3:-2}"; model="${4:-resnet18}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 - "$data" "$out" "$epochs" "$model" <<'PY'
import json, sys, time, torch
from amnesiac.run import TrainConfig, train_run
from amnesiac.unlearn import forget
data, out, epochs, model = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
cfg = TrainConfig(dataset="fashion-mnist", data_dir=data, model=model, epochs=epochs, batch_size=64,
                  limit_class={3: 100}, eval_class=3, record="watch", watch_class=3)
t = time.perf_counter()
res = train_run(cfg, f"{out}/run", device="auto", progress=False)
train_s = time.perf_counter() - t
n = len(res.run.training_data()) * epochs
print(f"trained {epochs} epochs in {train_s:.1f} s ({n / train_s:.0f} images/s incl. per-epoch evaluation and checkpoints)")
print("before:", {k: round(v, 4) for k, v in res.final.items()})
t = time.perf_counter()
r = forget(res.run, class_=3, progress=False)
print(f"forget class 3: {r.receipt['n_steps_reverted']} of {r.plan.total_steps} steps ({100 * r.plan.share:.1f}%) in {time.perf_counter() - t:.1f} s")
print("after:", {k: round(v, 4) for k, v in r.receipt["evaluation"]["after"].items()})
json.dump({"train_s": train_s, "images_per_s": n / train_s, "before": res.final, "receipt": r.receipt},
          open(f"{out}/gpu_check.json", "w"), indent=2, default=str)
PY
