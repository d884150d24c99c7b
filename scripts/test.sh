#!/usr/bin/env bash
# The test command: set up (system packages, tokenizer), then run every test in release mode
# (the tests run real tiny models; optimised builds keep the whole run to a few minutes), then
# a short run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
QWEN3VL_SETUP_NO_BUILD=1 bash scripts/setup.sh
cargo fmt --all -- --check
cargo test --release --locked
# Every fuzz target for 20 s over its committed seeds (docs/fuzzing.md).
bash scripts/fuzz.sh --short
