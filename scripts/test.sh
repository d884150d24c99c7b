#!/usr/bin/env bash
# The test command: set up (system packages, tokenizer), then run every test in release mode
# (the tests run real tiny models; optimised builds keep the whole run to a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
cargo test --release --locked
