#!/usr/bin/env bash
# Held-out accuracy of the trained demo model, qwen3vl against transformers on the same weights
# and questions (greedy): `qwen3vl bench --mode all` through a running `qwen3vl serve`, then
# scripts/train/eval_transformers.py, which prints both accuracies and every question whose
# prediction differs. Needs the reference env (scripts/ref/README.md).
#   bash scripts/train/compare.sh [dataset (default: both held-out sets)]
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL="${MODEL:-models/demo}"
PY="${PY:-$HOME/.cache/qwen3vl-ref/bin/python}"
PORT="${PORT:-18231}"
OUT="${OUT:-bench-results}"
bash scripts/demo-model.sh "$MODEL"
cargo build --release --locked
./target/release/qwen3vl serve --model "$MODEL" --port "$PORT" --host 127.0.0.1 &
pid=$!
trap 'kill $pid' EXIT
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
    sleep 0.3
done
datasets=("$@")
[ ${#datasets[@]} -gt 0 ] || datasets=(assets/demo-eval/textvqa_val.jsonl assets/demo-eval/mm_custom.jsonl)
for ds in "${datasets[@]}"; do
    name="demo-$(basename "$ds" .jsonl)"
    # base64 media: images inline, clip directories as AISBench frame lists (all 4 frames)
    ./target/release/qwen3vl bench --dataset "$ds" --mode all --url "http://127.0.0.1:$PORT" \
        --media base64 --num-frames 4 --concurrency 8 --max-tokens 32 --temperature 0 \
        --warmup 0 --output-dir "$OUT" --name "$name" --quiet
    "$PY" scripts/train/eval_transformers.py --model "$MODEL" --dataset "$ds" \
        --ours "$OUT/${name}_accuracy.jsonl" --out "$OUT/${name}_transformers.jsonl"
done
