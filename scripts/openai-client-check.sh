#!/usr/bin/env bash
# Runs the official `openai` Python client against `qwen3vl serve` on a tiny random checkpoint:
# a venv under ~/.cache/qwen3vl/openai-venv (pip install openai), a release build, a server on a
# free loopback port, scripts/openai_client_check.py. Not part of CI (needs PyPI); run by hand.
#
# usage: scripts/openai-client-check.sh [MODEL_DIR]   (default: a fresh tiny checkpoint)
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${QWEN3VL_CACHE:-$HOME/.cache/qwen3vl}"
VENV="$CACHE/openai-venv"
bash scripts/fetch-tokenizer.sh "$CACHE" >/dev/null
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -c "import openai" 2>/dev/null || "$VENV/bin/pip" install --quiet openai

cargo build --release --quiet
BIN=target/release/qwen3vl
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

MODEL="${1:-}"
if [ -z "$MODEL" ]; then
    MODEL="$WORK/tiny"
    "$BIN" make-checkpoint --arch tiny --layers 2 --out "$MODEL" >/dev/null
fi
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$BIN" serve --model "$MODEL" --tokenizer "$CACHE/tokenizer.json" --port "$PORT" \
    --max-seq-len 4096 --max-input-token-len 3072 --max-batch-size 8 --kv-cache-gib 0.5 \
    >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
    if curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; then break; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then cat "$WORK/server.log"; exit 1; fi
    sleep 0.2
done
"$VENV/bin/python" scripts/openai_client_check.py "http://127.0.0.1:$PORT" qwen3vl
