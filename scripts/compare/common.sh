# Shared by scripts/compare/{transformers,llamacpp}.sh (sourced, not run). Not part of CI.

die() { echo "error: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

REF_VENV_HELP='Create the pinned reference environment with:
    python3 -m venv ~/.cache/qwen3vl-ref && ~/.cache/qwen3vl-ref/bin/pip install torch==2.15.0 "transformers==4.57.6" safetensors pillow numpy torchvision==0.29.2
(or pass --python PATH to an interpreter that has them).'

# check_ref_python PY: the interpreter exists and has the pinned torch + transformers.
check_ref_python() {
    local py=$1 got
    [ -x "$py" ] || die "no Python at $py.
$REF_VENV_HELP"
    got=$("$py" -c 'import torch, transformers, safetensors, numpy; print(torch.__version__.split("+")[0], transformers.__version__)' 2>/dev/null) \
        || die "$py lacks torch / transformers / safetensors / numpy.
$REF_VENV_HELP"
    [ "$got" = "2.15.0 4.57.6" ] || echo "warning: $py has torch/transformers $got, the comparison is pinned to 2.15.0 4.57.6" >&2
}

# ensure_binary: build the default binary (a no-op when up to date) so the numbers are for this tree.
ensure_binary() {
    if [ -z "$BIN" ]; then
        say "cargo build --release --locked"
        (cd "$REPO" && cargo build --release --locked) >&2 || die "cargo build failed"
        BIN="$REPO/target/release/qwen3vl"
    fi
    [ -x "$BIN" ] || die "no qwen3vl binary at $BIN"
}

# ensure_model: reuse --model, or make the random 2B checkpoint once in the cache.
ensure_model() {
    if [ -z "$MODEL" ]; then
        MODEL="$HOME/.cache/qwen3vl-compare/models/2b"
        if [ ! -f "$MODEL/config.json" ]; then
            say "making a random-weight 2B checkpoint in $MODEL (4.3 GB)"
            "$BIN" make-checkpoint --arch 2b --out "$MODEL" >&2
        fi
    fi
    [ -f "$MODEL/config.json" ] || die "no config.json in $MODEL"
}

# bench_flag_supported FLAG: whether this bench-model build knows FLAG (flags land in parallel work).
bench_flag_supported() { "$BIN" bench-model --help 2>/dev/null | grep -q -- "$1"; }

# machine_summary: the lines docs/compare.md wants about the machine.
machine_summary() {
    local name fam model l3 mem flags
    name=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
    fam=$(lscpu | sed -n 's/^CPU family: *//p' | head -1)
    model=$(lscpu | sed -n 's/^Model: *//p' | head -1)
    l3=$(lscpu | sed -n 's/^L3 cache: *//p' | head -1)
    mem=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)
    flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E \
        '^(avx2|fma|avx512f|avx512bw|avx512_vnni|avx512_bf16|avx512_fp16|avx_vnni|amx_tile|amx_int8|amx_bf16)$' |
        tr '\n' ' ')
    echo "* date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "* CPU: $name (family $fam, model $model), $(nproc) logical CPUs, L3 $l3, $mem RAM"
    echo "* ISA flags of note: ${flags:-none}"
}

# run_measured NAME CMD...: run one engine; record the load average around it and, with GNU time,
# the CPU share it actually got (an uncontended N-thread run gets about N x 100 %) and its max RSS.
# Needs OUT and LOADS set by the caller.
run_measured() {
    local name=$1 share=""
    shift
    local before
    before=$(loadavg)
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -v -o "$OUT/$name.time.txt" "$@"
        share=$(sed -n 's/.*Percent of CPU this job got: *//p' "$OUT/$name.time.txt")
    else
        "$@"
    fi
    echo "$name: load $before -> $(loadavg)${share:+, CPU share $share}" >>"$LOADS"
}

# machine_limits: measure the bf16 peak and read bandwidth (scripts/compare/machine_limits.c) into
# OUT/machine.json and set PEAK / MEMBW, unless given, and INT8 (the AVX512-VNNI peak, AVX2
# vpmaddwd where VNNI is missing, for W8A8);
# PEAK_SRC / MEMBW_SRC say where they came from.
machine_limits() {
    local exe="$HOME/.cache/qwen3vl-compare/machine_limits" src="$HERE/machine_limits.c"
    PEAK_SRC="given"
    MEMBW_SRC="given"
    [ -n "$PEAK" ] && [ -n "$MEMBW" ] && return 0
    mkdir -p "$(dirname "$exe")"
    if [ ! -x "$exe" ] || [ "$src" -nt "$exe" ]; then
        cc -O3 -march=native -fopenmp "$src" -o "$exe" || {
            echo "warning: cannot build $src; FLOP fractions n/a, bandwidth 25 GB/s assumed" >&2
            MEMBW=${MEMBW:-25}
            MEMBW_SRC="assumed"
            return 0
        }
    fi
    say "measuring the bf16 peak and read bandwidth ($THREADS threads)"
    "$exe" "$THREADS" 1024 5 >"$OUT/machine.json"
    cat "$OUT/machine.json" >&2
    local p b
    p=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); v=j.get("bf16_matmul_peak_gflops", j["bf16_peak_gflops"]); print(v if v > 0 else "")' "$OUT/machine.json")
    b=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["read_bw_gbs"])' "$OUT/machine.json")
    if [ -z "$PEAK" ] && [ -n "$p" ]; then
        PEAK=$p
        PEAK_SRC="measured: the best of AMX-BF16 tiles (where present), AVX512-BF16 dot products and f32 FMAs (AVX-512,"
        PEAK_SRC+=" else AVX2) on registers (a bf16 matmul can use any), each the better of $THREADS x the 1-thread rate and the"
        PEAK_SRC+=" $THREADS-thread rate"
    fi
    INT8=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); v=j.get("int8_matmul_peak_gops", j.get("int8_peak_gops", 0)); print(v if v > 0 else "")' "$OUT/machine.json")
    if [ -z "$MEMBW" ]; then
        MEMBW=$b
        MEMBW_SRC="measured: median read rate over a 1 GiB huge-page buffer, 1 or $THREADS threads"
    fi
}

# bandwidth_recheck: measure the read bandwidth again after the engines ran and keep the higher
# reading. The host's memory bandwidth is shared with other guests and drifts over minutes
# (30.6 GB/s before a run and 45 GB/s a few minutes later, seen on an AMD EPYC VM); a single
# reading taken before the runs can put a decode figure above "the limit".
bandwidth_recheck() {
    local exe="$HOME/.cache/qwen3vl-compare/machine_limits" b
    case "$MEMBW_SRC" in measured*) ;; *) return 0 ;; esac
    [ -x "$exe" ] || return 0
    say "measuring the read bandwidth again"
    "$exe" "$THREADS" 1024 5 >"$OUT/machine-after.json"
    b=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["read_bw_gbs"])' "$OUT/machine-after.json")
    MEMBW_SRC+=", the higher of a reading before the runs ($MEMBW GB/s) and one after them ($b GB/s)"
    MEMBW=$(python3 -c 'import sys; print(max(float(sys.argv[1]), float(sys.argv[2])))' "$MEMBW" "$b")
}
