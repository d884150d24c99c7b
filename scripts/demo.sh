#!/usr/bin/env bash
# One command on a fresh machine: install what is needed, build, unpack the trained demo model
# (a small Qwen3-VL trained from scratch by scripts/train/, real tokenizer), draw a fresh picture
# and stream the model's answer to a question about it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
MODEL="${QWEN3VL_DEMO_MODEL:-models/demo}"
bash scripts/demo-model.sh "$MODEL"
cargo run --release --locked --example demo -- "$MODEL" "${1:-What is in this picture?}"
