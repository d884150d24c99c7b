#!/usr/bin/env bash
# qwen3vl vs Hugging Face transformers 4.57.6 (torch 2.15.0, bf16) on the same random-weight
# Qwen3-VL-2B checkpoint, figure by figure as `qwen3vl bench-model` measures them (issue 7 table).
#
# Both engines run the same work: one 448x448 image (grid 1x28x28 = 784 patches) through the vision
# tower; TTFT for 3 text tokens + vision_start + 196 image tokens + vision_end + 19+5 question tokens;
# a 128-token text prefill; greedy batch-1 decode of 32 tokens after a 16-token prompt (KV cache).
# Each engine runs in its own process, one after the other (never concurrently), so each peak RSS
# is its own. Values are medians over --repeats. By hand only: CI never runs this (needs the
# pinned Python env and minutes of CPU).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: scripts/compare/transformers.sh [options]

  --model DIR        Qwen3-VL checkpoint (default: make/reuse a random 2B one in
                     ~/.cache/qwen3vl-compare/models/2b with `qwen3vl make-checkpoint --arch 2b`)
  --threads N        threads for both engines (default 2)
  --repeats N        timed repeats per figure, medians reported (default 3)
  --bin PATH         qwen3vl binary (default: target/release/qwen3vl, built with
                     `cargo build --release --locked`)
  --python PATH      interpreter with torch 2.15.0 + transformers 4.57.6
                     (default ~/.cache/qwen3vl-ref/bin/python)
  --out DIR          where the raw JSON goes (default target/compare/transformers-<UTC time>)
  --attn IMPL        transformers attention: sdpa (its default, faster) or eager (default sdpa)
  --streams N        concurrent streams for the W8A8 aggregate decode figure (default 16)
  --peak-gflops X    bf16 peak for the vision/TTFT/prefill fractions (default: measured by
                     machine_limits.c: the better of AVX512-BF16 dot products and f32
                     FMAs on registers)
  --mem-bw-gbs X     memory bandwidth for the decode fractions (default: measured by
                     machine_limits.c, median read rate over a 1 GiB huge-page buffer, before and
                     after the runs, the higher of the two; 25 GB/s if it cannot be built)
  --skip-hf          reuse OUT/transformers.json from an earlier run (re-run only qwen3vl)
  --skip-qwen3vl     reuse OUT/qwen3vl-*.json from an earlier run (re-run only transformers)
  -h, --help         this text

Prints a markdown table: figure | transformers | qwen3vl | ratio | target | fraction of limit.
EOF
}

REPO=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$REPO/scripts/compare"
# shellcheck source=scripts/compare/common.sh
. "$HERE/common.sh"

MODEL="" THREADS=2 REPEATS=3 BIN="" PY="$HOME/.cache/qwen3vl-ref/bin/python" OUT="" ATTN=sdpa
STREAMS=16 PEAK="" MEMBW="" SKIP_HF=0 SKIP_OURS=0
while [ $# -gt 0 ]; do
    case "$1" in
        --model) MODEL=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --repeats) REPEATS=$2; shift 2 ;;
        --bin) BIN=$2; shift 2 ;;
        --python) PY=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --attn) ATTN=$2; shift 2 ;;
        --streams) STREAMS=$2; shift 2 ;;
        --peak-gflops) PEAK=$2; shift 2 ;;
        --mem-bw-gbs) MEMBW=$2; shift 2 ;;
        --skip-hf) SKIP_HF=1; shift ;;
        --skip-qwen3vl) SKIP_OURS=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
done
OUT=${OUT:-$REPO/target/compare/transformers-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"

check_ref_python "$PY"
ensure_binary
ensure_model
MODEL=$(cd "$MODEL" && pwd)
LOADS="$OUT/loadavg.txt"
# A partial re-run (--skip-*) keeps the notes of the runs it reuses.
[ "$SKIP_HF$SKIP_OURS" = 00 ] && : >"$LOADS"
touch "$LOADS"

# The ceilings first: they are the denominators of every "fraction of limit".
machine_limits

if [ "$SKIP_HF" = 0 ]; then
    say "transformers (bf16, $THREADS threads, $REPEATS repeats, attn $ATTN)"
    run_measured transformers "$PY" "$HERE/hf_bench.py" bench --model "$MODEL" --threads "$THREADS" \
        --repeats "$REPEATS" --attn "$ATTN" --json "$OUT/transformers.json"
fi

if [ "$SKIP_OURS" = 0 ]; then
    say "qwen3vl bench-model (bf16, $THREADS threads, $REPEATS repeats)"
    export QWEN3VL_THREADS=$THREADS
    # The multi-stream figure is a W8A8 target; skip it in bf16 (minutes of CPU for no target).
    nostreams=()
    bench_flag_supported --decode-streams && nostreams=(--decode-streams 0)
    run_measured qwen3vl-bf16 "$BIN" bench-model --model "$MODEL" --repeats "$REPEATS" \
        "${nostreams[@]}" --json "$OUT/qwen3vl-bf16.json" >&2
    # W8A8 and multi-stream decode are being added in parallel; measure them once they exist.
    rm -f "$OUT/qwen3vl-w8a8.json"
    if bench_flag_supported --quantize; then
        extra=()
        bench_flag_supported --decode-streams && extra=(--decode-streams "$STREAMS")
        say "qwen3vl bench-model --quantize w8a8 ${extra[*]}"
        run_measured qwen3vl-w8a8 "$BIN" bench-model --model "$MODEL" --repeats "$REPEATS" \
            --quantize w8a8 "${extra[@]}" --json "$OUT/qwen3vl-w8a8.json" >&2
    else
        say "this bench-model has no --quantize: W8A8 rows will read n/a"
    fi
fi
bandwidth_recheck

{
    echo "### qwen3vl vs transformers — random-weight Qwen3-VL-2B, $THREADS threads"
    echo
    machine_summary
    echo "* qwen3vl $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?') ($BIN)"
    echo "* transformers $("$PY" -c 'import transformers; print(transformers.__version__)'), torch $("$PY" -c 'import torch; print(torch.__version__)'), bf16, attn $ATTN, 1 warm-up run per figure"
    echo "* repeats: $REPEATS (medians); model $MODEL"
    echo "* load average (1/5/15 min) before -> after each run, and the CPU share it got (uncontended: ~${THREADS}00 %):"
    sed 's/^/  * /' "$LOADS"
    echo
    python3 "$HERE/report.py" transformers --model "$MODEL" --hf "$OUT/transformers.json" \
        --ours "$OUT/qwen3vl-bf16.json" --ours-w8a8 "$OUT/qwen3vl-w8a8.json" \
        ${PEAK:+--peak-gflops "$PEAK"} ${INT8:+--int8-peak-gops "$INT8"} --peak-source "$PEAK_SRC" --mem-bw-gbs "$MEMBW" \
        --mem-bw-source "$MEMBW_SRC" --streams "$STREAMS"
} | tee "$OUT/table.md"
say "raw JSON and the table are in $OUT"
