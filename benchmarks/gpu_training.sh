#!/usr/bin/env bash
# One command for a lent CUDA machine (issue 12): train the CPU-budget recipe on 50 Salads one-hot labels and on
# synthetic GTEA features on the GPU, then score them against the label-only baselines (same code as on the CPU).
#   bash benchmarks/gpu_training.sh [MINUTES_PER_RUN (default 5)] [OUT (default $OUT or /tmp/gpu_training)]
# Without CUDA it says so and exits 0. Figures go to OUT/*.md; the runs stay in OUT/work_*.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-5}"
out="${2:-${OUT:-/tmp/gpu_training}}"
py="${PYTHON:-python}"
if ! "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_training: no torch with CUDA here ($py); nothing to do"; exit 0
fi
mkdir -p "$out"
"$py" -m actfusion_training.make_dataset --source ../shared/data/gtea --out "$out/gtea_synthetic" --kind synthetic >/dev/null
"$py" benchmarks/bench_lta_gt_observation.py --source ../shared/data/50salads --time-budget "$minutes" \
    --device cuda --steps-sweep 25 --seeds 0 1 2 --work "$out/work_50salads" | tee "$out/50salads_onehot.md"
"$py" benchmarks/bench_lta_gt_observation.py --source ../shared/data/gtea --sample-rate 2 --time-budget "$minutes" \
    --device cuda --steps-sweep 25 --seeds 0 1 2 --work "$out/work_gtea" | tee "$out/gtea_onehot.md"
"$py" -m actfusion_training.train --config training/configs/gtea.yaml --data-root "$out/gtea_synthetic" --split 1 \
    --out "$out/work_gtea_synthetic" --time-budget "$minutes" --device cuda
"$py" -m actfusion_training.eval_model --checkpoint "$out/work_gtea_synthetic/best.pt" --data-root "$out/gtea_synthetic" \
    --split 1 --out "$out/work_gtea_synthetic/eval" --device cuda | tee "$out/gtea_synthetic.md"
