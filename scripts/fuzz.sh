#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ (cargo fuzz) and runs them over the committed seeds.
#
#   bash scripts/fuzz.sh --short                   every target for QWEN3VL_FUZZ_SHORT_S (20) s (CI)
#   bash scripts/fuzz.sh --long SECONDS [TARGET…]  the documented long runs, one target at a time
#   bash scripts/fuzz.sh --build                   build only
#
# One summary line per target goes to stdout and to fuzz/logs/summary.txt: executions,
# executions/s, libFuzzer's final `cov:` (edges) and `ft:` (features), corpus size, crashes.
# Short runs write new inputs to a throw-away folder; long runs keep theirs in fuzz/corpus/
# (ignored by git: only the seeds are committed). A crash stops the script with status 1 and
# leaves the input in fuzz/artifacts/TARGET/.
#
# Environment: QWEN3VL_FUZZ_SANITIZER (address by default; none turns ASan off),
# QWEN3VL_FUZZ_TARGET_DIR (the build folder; default under QWEN3VL_CACHE so that CI runs on
# the same machine reuse the instrumented dependencies), QWEN3VL_FUZZ_NICE (e.g. 19).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
TARGETS=(request_json mindie_config chat_template safetensors_header image_decode video_decode)
SANITIZER="${QWEN3VL_FUZZ_SANITIZER:-address}"
TARGET_DIR="${QWEN3VL_FUZZ_TARGET_DIR:-${QWEN3VL_CACHE:-$HOME/.cache/qwen3vl}/fuzz-target}"
NICE=(nice -n "${QWEN3VL_FUZZ_NICE:-0}")
LOGS=fuzz/logs

# Known false positives of LeakSanitizer, one per line with the reason (fuzz/lsan.supp).
export LSAN_OPTIONS="suppressions=$PWD/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

# cargo fuzz passes -Z flags (the sanitizer, -Zbuild-std when asked); only the stable
# toolchain is available, and RUSTC_BOOTSTRAP lets it take them.
export RUSTC_BOOTSTRAP=1

mode="${1:---short}"
shift || true
seconds="${QWEN3VL_FUZZ_SHORT_S:-20}"
if [ "$mode" = --long ]; then
    seconds="${1:?--long needs a number of seconds}"
    shift
fi
if [ "$#" -gt 0 ]; then
    TARGETS=("$@")
fi

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

build() {
    # Release with debug assertions and overflow checks (cargo fuzz's default), ASan unless
    # turned off. 16 codegen units: the library is large and the build otherwise dominates.
    "${NICE[@]}" cargo fuzz build --fuzz-dir fuzz --target-dir "$TARGET_DIR" \
        -s "$SANITIZER" --codegen-units 16 "$@"
}

start=$(date +%s)
build
echo "fuzz targets built in $(($(date +%s) - start)) s (sanitizer: $SANITIZER)"
[ "$mode" = --build ] && exit 0
case "$mode" in
--short | --long) ;;
*)
    echo "usage: $0 --short | --long SECONDS [TARGET…] | --build" >&2
    exit 2
    ;;
esac

mkdir -p "$LOGS"
failed=0
for t in "${TARGETS[@]}"; do
    if [ "$mode" = --long ]; then
        corpus="fuzz/corpus/$t"
        mkdir -p "$corpus"
    else
        corpus=$(mktemp -d)
    fi
    log="$LOGS/$t.log"
    mkdir -p "fuzz/artifacts/$t"
    before=$(find "fuzz/artifacts/$t" -type f | wc -l)
    status=0
    # -timeout: one input taking 10 s is a finding; -rss_limit_mb: the targets use small
    # media limits, so 2 GiB means a leak or an unbounded allocation.
    "${NICE[@]}" cargo fuzz run --fuzz-dir fuzz --target-dir "$TARGET_DIR" -s "$SANITIZER" \
        --codegen-units 16 "$t" "$corpus" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1 || status=$?
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
    stat() { grep -E "^stat::$1:" "$log" | awk '{print $2}' | tail -n 1; }
    field() { sed -nE "s/.* $1: ([^ ]+).*/\1/p" <<<"$done_line"; }
    crashes=$(($(find "fuzz/artifacts/$t" -type f | wc -l) - before))
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes=1
    fi
    line="$(date -u +%FT%TZ) target=$t seconds=$seconds sanitizer=$SANITIZER"
    line+=" execs=$(stat number_of_executed_units) exec/s=$(stat average_exec_per_sec)"
    line+=" cov=$(field cov) ft=$(field ft) corpus=$(field corp) peak_rss_mb=$(stat peak_rss_mb)"
    line+=" crashes=$crashes status=$status"
    echo "$line" | tee -a "$LOGS/summary.txt"
    if [ "$status" -ne 0 ]; then
        failed=1
        echo "---- $t failed; the end of $log:" >&2
        tail -n 40 "$log" >&2
    fi
    [ "$mode" = --long ] || rm -rf "$corpus"
done
exit "$failed"
