#!/usr/bin/env bash
# Training reproducibility (same seed → same weights file, byte for byte, on the same toolchain:
# the reference env of scripts/ref/README.md, one thread).
#   bash scripts/train/reproduce.sh          two short runs (20 steps) must give the same sha256
#   bash scripts/train/reproduce.sh --full   the committed recipe, compared with the committed
#                                            assets/demo-model/model.safetensors.sha256 (~1 h)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PY:-$HOME/.cache/qwen3vl-ref/bin/python}"
RECIPE=(--steps 1500 --batch 24 --lr 1.2e-3 --save-every 250 --seed 1234)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [ "${1:-}" = "--full" ]; then
    "$PY" scripts/train/train.py "${RECIPE[@]}" --out "$work/full" >/dev/null
    got="$(sha256sum "$work/full/checkpoint/model.safetensors" | cut -d' ' -f1)"
    want="$(cut -d' ' -f1 assets/demo-model/model.safetensors.sha256)"
    echo "trained $got"
    echo "recorded $want"
    [ "$got" = "$want" ]
    exit
fi
for run in a b; do
    "$PY" scripts/train/train.py --steps 20 --batch 8 --eval-every 10 --out "$work/$run" >/dev/null
    sha256sum "$work/$run/checkpoint/model.safetensors" | cut -d' ' -f1 | tee "$work/$run.sha"
done
cmp -s "$work/a.sha" "$work/b.sha" && echo "same weights" || { echo "weights differ"; exit 1; }
