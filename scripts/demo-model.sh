#!/usr/bin/env bash
# Unpacks the committed trained demo model (assets/demo-model: configs + gzip'd bf16 safetensors)
# into a model folder the engine loads, with the real Qwen3 tokenizer, and checks the weights
# against the recorded sha256. Idempotent: an intact folder is left as it is.
#   bash scripts/demo-model.sh [out-dir (default models/demo)]
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=assets/demo-model
OUT="${1:-models/demo}"
CACHE="${QWEN3VL_CACHE:-$HOME/.cache/qwen3vl}"
want="$(cut -d' ' -f1 "$SRC/model.safetensors.sha256")"
mkdir -p "$OUT"
if [ ! -f "$OUT/model.safetensors" ] || [ "$(sha256sum "$OUT/model.safetensors" | cut -d' ' -f1)" != "$want" ]; then
    gzip -dc "$SRC/model.safetensors.gz" > "$OUT/model.safetensors.tmp"
    got="$(sha256sum "$OUT/model.safetensors.tmp" | cut -d' ' -f1)"
    if [ "$got" != "$want" ]; then
        echo "demo model: sha256 $got, expected $want" >&2
        exit 1
    fi
    mv "$OUT/model.safetensors.tmp" "$OUT/model.safetensors"
fi
for f in config.json generation_config.json preprocessor_config.json video_preprocessor_config.json; do
    cp "$SRC/$f" "$OUT/$f"
done
if [ ! -f "$CACHE/tokenizer.json" ]; then
    bash scripts/fetch-tokenizer.sh "$CACHE"
fi
cp "$CACHE/tokenizer.json" "$OUT/tokenizer.json"
