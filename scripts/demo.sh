#!/usr/bin/env bash
# One command on a fresh machine: install what is needed, build, make a tiny random-weight
# checkpoint with the real Qwen3 tokenizer, and stream an answer to an image + question.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
CACHE="${QWEN3VL_CACHE:-$HOME/.cache/qwen3vl}"
MODEL="${QWEN3VL_DEMO_MODEL:-models/demo-tiny}"
if [ ! -f "$MODEL/config.json" ]; then
    ./target/release/qwen3vl make-checkpoint --arch tiny --out "$MODEL" --tokenizer "$CACHE/tokenizer.json"
fi
cargo run --release --locked --example demo -- "$MODEL" "${1:-What is in this picture?}"
