#!/usr/bin/env bash
# qwen3vl vs llama.cpp on the text decoder of the same random-weight Qwen3-VL-2B checkpoint:
# prefill (pp128) and batch-1 decode (tg32), BF16 and Q8_0 GGUF against qwen3vl bf16 and W8A8.
#
# Why a Qwen3 GGUF: llama.cpp's Qwen3-VL support lives in the mtmd tools; llama-bench wants a plain
# text model. The Qwen3-VL text decoder is Qwen3 dense (q/k norms, GQA, SwiGLU), and with text-only
# positions the three interleaved M-RoPE sections carry the same index, so M-RoPE equals plain RoPE:
# a Qwen3ForCausalLM with the same sizes and weights is an exact speed stand-in for our text path.
#
# llama.cpp comes from the llama-cpp-python 0.3.36 sdist on PyPI (it vendors llama.cpp 0c1e570,
# 2026-10-01), built once into a cache outside the repository (never committed). GGML_NATIVE=ON
# without AMX: on AMX hosts this llama.cpp crashes (SIGILL in tinygemm_kernel_amx, unconfigured
# tiles; llama.cpp PR #26954), so there we fall back to an explicit AVX-512 build without AMX.
# By hand only: CI never runs this.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: scripts/compare/llamacpp.sh [options]

  --model DIR        Qwen3-VL checkpoint (default: make/reuse a random 2B one in
                     ~/.cache/qwen3vl-compare/models/2b)
  --threads N        threads for both engines (default 2)
  --repeats N        repeats (llama-bench -r, bench-model --repeats), medians (default 3)
  --bin PATH         qwen3vl binary (default: target/release/qwen3vl, built with
                     `cargo build --release --locked`)
  --python PATH      interpreter for convert_hf_to_gguf.py: needs torch, numpy, transformers,
                     safetensors, pyyaml, tqdm, requests (default ~/.cache/qwen3vl-ref/bin/python)
  --cache DIR        llama.cpp source, build and GGUF files (default ~/.cache/qwen3vl-llamacpp)
  --tokenizer-dir D  real Qwen3 tokenizer.json + tokenizer_config.json (default ~/.cache/qwen3vl)
  --out DIR          raw JSON output (default target/compare/llamacpp-<UTC time>)
  --prefill N        prompt tokens, llama-bench -p and bench-model --prefill-tokens (default 128)
  --decode N         generated tokens, llama-bench -n and bench-model --decode-tokens (default 32)
  --peak-gflops X    bf16 peak for the prefill fraction (default: measured by machine_limits.c)
  --mem-bw-gbs X     memory bandwidth for the decode fractions (default: measured by
                     machine_limits.c before and after the runs, the higher; 25 GB/s if it
                     cannot be built)
  --prepare-only     fetch, build and convert, then stop (do the slow part while the machine is busy)
  -h, --help         this text
EOF
}

REPO=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$REPO/scripts/compare"
# shellcheck source=scripts/compare/common.sh
. "$HERE/common.sh"

LLAMA_PY_VERSION=0.3.36
MODEL="" THREADS=2 REPEATS=3 BIN="" PY="$HOME/.cache/qwen3vl-ref/bin/python"
CACHE="$HOME/.cache/qwen3vl-llamacpp" TOKDIR="$HOME/.cache/qwen3vl" OUT="" NP=128 NG=32 PEAK="" MEMBW="" PREPARE_ONLY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --model) MODEL=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --repeats) REPEATS=$2; shift 2 ;;
        --bin) BIN=$2; shift 2 ;;
        --python) PY=$2; shift 2 ;;
        --cache) CACHE=$2; shift 2 ;;
        --tokenizer-dir) TOKDIR=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --prefill) NP=$2; shift 2 ;;
        --decode) NG=$2; shift 2 ;;
        --peak-gflops) PEAK=$2; shift 2 ;;
        --mem-bw-gbs) MEMBW=$2; shift 2 ;;
        --prepare-only) PREPARE_ONLY=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
done
OUT=${OUT:-$REPO/target/compare/llamacpp-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT" "$CACHE"
LOADS="$OUT/loadavg.txt"
: >"$LOADS"

# ---- environment checks up front, so a missing piece fails before minutes of building ----------
LB="$CACHE/build/bin/llama-bench" LQ="$CACHE/build/bin/llama-quantize"
if [ ! -x "$LB" ] || [ ! -x "$LQ" ]; then
    command -v cmake >/dev/null || die "cmake not found: apt-get install cmake (3.25 is enough)"
    command -v c++ >/dev/null || die "no C++ compiler: apt-get install build-essential"
    command -v pip >/dev/null || command -v pip3 >/dev/null || die "pip not found (needed for pip download)"
fi
[ -x "$PY" ] || die "no Python at $PY.
$REF_VENV_HELP"
"$PY" -c 'import torch, numpy, transformers, safetensors, yaml, tqdm, requests' 2>/dev/null || die \
    "$PY cannot import torch numpy transformers safetensors yaml tqdm requests (convert_hf_to_gguf.py needs them).
$REF_VENV_HELP
then: ~/.cache/qwen3vl-ref/bin/pip install pyyaml tqdm requests"
[ -f "$TOKDIR/tokenizer.json" ] && [ -f "$TOKDIR/tokenizer_config.json" ] \
    || die "no tokenizer.json / tokenizer_config.json in $TOKDIR: run bash scripts/fetch-tokenizer.sh"
# --prepare-only with --model needs no qwen3vl binary (nothing of ours runs).
[ "$PREPARE_ONLY" = 1 ] && [ -n "$MODEL" ] || ensure_binary
ensure_model
MODEL=$(cd "$MODEL" && pwd)

# ---- llama.cpp source: the PyPI sdist, unpacked once --------------------------------------------
SDIST="$CACHE/src/llama_cpp_python-$LLAMA_PY_VERSION.tar.gz"
SRC="$CACHE/src/llama_cpp_python-$LLAMA_PY_VERSION/vendor/llama.cpp"
if [ ! -f "$SRC/CMakeLists.txt" ]; then
    mkdir -p "$CACHE/src"
    if [ ! -f "$SDIST" ]; then
        say "pip download llama-cpp-python==$LLAMA_PY_VERSION (sdist, ~77 MB)"
        "$(command -v pip || command -v pip3)" download --no-deps --no-binary :all: \
            "llama-cpp-python==$LLAMA_PY_VERSION" -d "$CACHE/src" >&2
    fi
    tar -xzf "$SDIST" -C "$CACHE/src"
fi
ln -sfn "$SRC" "$CACHE/llama.cpp-src" # the build dir remembers this path

# ---- build llama-bench + llama-quantize once (~4-10 min on 2 cores) ------------------------------
if [ ! -x "$LB" ] || [ ! -x "$LQ" ]; then
    if grep -qw amx_tile /proc/cpuinfo; then
        echo "note: AMX host; building without GGML_NATIVE (AVX-512 + VNNI + BF16, no AMX) to avoid the SIGILL bug" >&2
        ISA=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
            -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON)
    else
        ISA=(-DGGML_NATIVE=ON)
    fi
    say "building llama.cpp ($LLAMA_PY_VERSION vendored) in $CACHE/build"
    cmake -S "$CACHE/llama.cpp-src" -B "$CACHE/build" -DCMAKE_BUILD_TYPE=Release "${ISA[@]}" \
        -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAMA_OPENSSL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >&2
    cmake --build "$CACHE/build" -j"$(nproc)" --target llama-bench llama-quantize >&2
fi

# ---- GGUF files of the checkpoint's text decoder, cached per checkpoint --------------------------
# Key: checkpoint path + safetensors sizes and mtimes, so a re-made checkpoint is re-converted.
KEY=$(stat -c '%n %s %Y' "$MODEL"/*.safetensors | sha1sum | cut -c1-12)
GDIR="$CACHE/gguf/$(basename "$MODEL")-$KEY"
G_BF16="$GDIR/text-bf16.gguf" G_Q8="$GDIR/text-q8_0.gguf"
if [ ! -f "$G_BF16" ]; then
    mkdir -p "$GDIR"
    say "exporting the text decoder as a Qwen3ForCausalLM folder"
    python3 "$HERE/qwen3_text_export.py" --model "$MODEL" --tokenizer-dir "$TOKDIR" --out "$GDIR/hf" >&2
    # The converter's Qwen vocab path imports sentencepiece before it looks for a tokenizer.model
    # (ModuleNotFoundError instead of the FileNotFoundError it handles), so it needs the module even
    # for a BPE tokenizer. Install it beside, not into, the pinned reference venv.
    CONVPY="$CACHE/pylib"
    if ! PYTHONPATH="$CONVPY" "$PY" -c 'import sentencepiece' 2>/dev/null; then
        say "pip install --target $CONVPY sentencepiece (converter dependency)"
        "$PY" -m pip install -q --target "$CONVPY" "sentencepiece>=0.1.98,<0.3.0" >&2
    fi
    say "convert_hf_to_gguf.py --outtype bf16"
    # The vendored gguf-py goes first on the path: the converter and its gguf package must match.
    PYTHONPATH="$SRC/gguf-py:$CONVPY${PYTHONPATH:+:$PYTHONPATH}" "$PY" "$SRC/convert_hf_to_gguf.py" "$GDIR/hf" \
        --outtype bf16 --outfile "$G_BF16.tmp" >&2
    mv "$G_BF16.tmp" "$G_BF16"
    rm -rf "$GDIR/hf" # 3.4 GB we no longer need
fi
if [ ! -f "$G_Q8" ]; then
    say "llama-quantize Q8_0"
    "$LQ" "$G_BF16" "$G_Q8.tmp" Q8_0 "$THREADS" >&2
    mv "$G_Q8.tmp" "$G_Q8"
fi

if [ "$PREPARE_ONLY" = 1 ]; then
    say "prepared: $LB, $G_BF16, $G_Q8"
    exit 0
fi

# ---- measurements, one engine at a time ----------------------------------------------------------
machine_limits
for q in bf16 q8_0; do
    g=$G_BF16
    [ "$q" = q8_0 ] && g=$G_Q8
    say "llama-bench $q: -t $THREADS -p $NP -n $NG -r $REPEATS"
    run_measured "llama.cpp-$q" "$LB" -m "$g" -t "$THREADS" -p "$NP" -n "$NG" -r "$REPEATS" -o json \
        >"$OUT/llamacpp-$q.json"
done

export QWEN3VL_THREADS=$THREADS
OURS=(bench-model --model "$MODEL" --repeats "$REPEATS" --only prefill,decode --prefill-tokens "$NP"
    --decode-tokens "$NG")
say "qwen3vl bench-model --only prefill,decode (bf16)"
run_measured qwen3vl-bf16 "$BIN" "${OURS[@]}" --json "$OUT/qwen3vl-bf16.json" >&2
rm -f "$OUT/qwen3vl-w8a8.json"
if bench_flag_supported --quantize; then
    say "qwen3vl bench-model --only prefill,decode --quantize w8a8"
    run_measured qwen3vl-w8a8 "$BIN" "${OURS[@]}" --quantize w8a8 --json "$OUT/qwen3vl-w8a8.json" >&2
else
    say "this bench-model has no --quantize: W8A8 rows will read n/a"
fi
bandwidth_recheck

{
    echo "### qwen3vl vs llama.cpp — text decoder of the random-weight Qwen3-VL-2B, $THREADS threads"
    echo
    machine_summary
    echo "* qwen3vl $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?') ($BIN)"
    echo "* llama.cpp vendored in llama-cpp-python $LLAMA_PY_VERSION; GGUF $(du -h "$G_BF16" | cut -f1) BF16 and $(du -h "$G_Q8" | cut -f1) Q8_0 in $GDIR"
    echo "* llama-bench -t $THREADS -p $NP -n $NG -r $REPEATS; bench-model --repeats $REPEATS --only prefill,decode (decode after a 16-token prompt)"
    echo "* load average (1/5/15 min) before -> after each run, and the CPU share it got (uncontended: ~${THREADS}00 %):"
    sed 's/^/  * /' "$LOADS"
    echo
    python3 "$HERE/report.py" llamacpp --model "$MODEL" --bench-bf16 "$OUT/llamacpp-bf16.json" \
        --bench-q8 "$OUT/llamacpp-q8_0.json" --ours "$OUT/qwen3vl-bf16.json" \
        --ours-w8a8 "$OUT/qwen3vl-w8a8.json" ${PEAK:+--peak-gflops "$PEAK"} ${INT8:+--int8-peak-gops "$INT8"} --peak-source "$PEAK_SRC" \
        --mem-bw-gbs "$MEMBW" --mem-bw-source "$MEMBW_SRC" --prefill-tokens "$NP" --decode-tokens "$NG"
} | tee "$OUT/table.md"
say "raw JSON and the table are in $OUT"
