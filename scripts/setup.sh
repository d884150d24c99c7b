#!/usr/bin/env bash
# Installs what qwen3vl needs on Debian 12 (system libraries, the real Qwen3 tokenizer) and builds
# the release binary. Idempotent: packages already present are not reinstalled.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS="pkg-config clang libclang-dev libdnnl-dev libavcodec-dev libavformat-dev libavutil-dev \
libswscale-dev libswresample-dev libavfilter-dev libavdevice-dev"
missing=""
for p in $PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    echo "installing:$missing"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

if [ -f scripts/fetch-tokenizer.sh ]; then
    bash scripts/fetch-tokenizer.sh "${QWEN3VL_CACHE:-$HOME/.cache/qwen3vl}"
fi

# scripts/test.sh skips this: `cargo test` builds the binary itself (with the `testing` feature
# the tests turn on), so a build here would be compiled again.
if [ "${QWEN3VL_SETUP_NO_BUILD:-0}" != 1 ]; then
    cargo build --release --locked
fi
