#!/usr/bin/env python3
"""Markdown tables for scripts/compare/{transformers,llamacpp}.sh (standard library only).

Reads the raw JSON the engines wrote and the checkpoint's config.json / safetensors headers, and
adds the "fraction of the physical limit" column:
  * vision / TTFT / prefill: useful FLOPs (counted from the config, below) / time / bf16 peak;
  * decode: bytes of weights streamed per decode step x steps/s / memory bandwidth. With N
    concurrent streams one step serves N tokens, so steps/s = aggregate tok/s / N.
Missing figures (an engine or a flag that does not exist yet) print as "n/a".
"""

import argparse
import glob
import json
import math
import os
import statistics
import struct

NA = "n/a"


# --------------------------------------------------------------------------------------------
# Model arithmetic (Qwen3-VL dense; MoE checkpoints are not handled)
# --------------------------------------------------------------------------------------------
def load_config(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        return json.load(f)


def text_layer_params(tc):
    h, hd = tc["hidden_size"], tc["head_dim"]
    q = tc["num_attention_heads"] * hd
    kv = tc["num_key_value_heads"] * hd
    return 2 * h * q + 2 * h * kv + 3 * h * tc["intermediate_size"]


def text_prefill_flops(tc, t):
    """One forward over t tokens from an empty cache, logits for the last token only."""
    layers = tc["num_hidden_layers"]
    lin = 2 * t * layers * text_layer_params(tc)
    # causal attention: QK^T and PV, each 2 flops per (query, key<=query, head dim, head)
    attn = layers * 2 * 2 * tc["num_attention_heads"] * tc["head_dim"] * t * (t + 1) / 2
    return lin + attn + 2 * tc["hidden_size"] * tc["vocab_size"]


def vision_flops(vc, n_patch):
    h, i = vc["hidden_size"], vc["intermediate_size"]
    m = vc["spatial_merge_size"] ** 2
    patch_dim = vc["in_channels"] * vc["temporal_patch_size"] * vc["patch_size"] ** 2
    embed = 2 * n_patch * patch_dim * h
    # qkv (3h), proj (h), fc1 (i), fc2 (i); full (non-causal) attention over all patches
    blocks = vc["depth"] * (2 * n_patch * (4 * h * h + 2 * h * i) + 4 * n_patch * n_patch * h)
    # final merger + one per deepstack layer: [n/m, m*h] -> m*h -> out
    mergers = (1 + len(vc.get("deepstack_visual_indexes", []))) * 2 * (n_patch / m) * (
        (m * h) ** 2 + m * h * vc["out_hidden_size"]
    )
    return embed + blocks + mergers


def safetensors_tensors(model_dir):
    """name -> (dtype, numel, nbytes) from the headers of every *.safetensors file."""
    out = {}
    for path in sorted(glob.glob(os.path.join(model_dir, "*.safetensors"))):
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        for name, t in header.items():
            if name == "__metadata__":
                continue
            numel = math.prod(t["shape"]) if t["shape"] else 1
            out[name] = (t["dtype"], numel, t["data_offsets"][1] - t["data_offsets"][0], t["shape"])
    return out


def decode_bytes(model_dir, cfg, w8a8=False):
    """Weight bytes one decode step reads: every text-decoder tensor plus the output projection.

    Tied embeddings: the embedding matrix is read once, as lm_head (the lookup reads one row).
    W8A8 as `bench-model --quantize w8a8` loads it: every decoder linear and the LM head (tied or
    not) int8 with one fp32 scale per output channel; norms stay as stored.
    """
    tensors = safetensors_tensors(model_dir)
    tied = cfg.get("tie_word_embeddings", cfg["text_config"].get("tie_word_embeddings", False))
    total = 0
    for name, (_, numel, nbytes, shape) in tensors.items():
        if not (name.startswith("model.language_model.") or name.startswith("lm_head.")):
            continue
        if name.endswith("embed_tokens.weight") and not tied and "lm_head.weight" in tensors:
            continue
        is_linear = (".layers." in name and name.endswith("proj.weight")) or name in (
            "lm_head.weight", "model.language_model.embed_tokens.weight")
        if w8a8 and is_linear and len(shape) == 2:
            total += numel + 4 * shape[0]
        else:
            total += nbytes
    return total


def checkpoint_bytes(model_dir):
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(model_dir, "*.safetensors")))


def kv_bytes(tc, tokens, elem=2):
    return tc["num_hidden_layers"] * 2 * tc["num_key_value_heads"] * tc["head_dim"] * elem * tokens


# --------------------------------------------------------------------------------------------
# Formatting helpers
# --------------------------------------------------------------------------------------------
def load_json(path):
    if not path or not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def num(d, key):
    v = d.get(key) if d else None
    if v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v))):
        return None
    return float(v)


def fmt(v, unit, digits):
    return NA if v is None else f"{v:.{digits}f} {unit}".strip()


def ratio(a, b):
    return NA if a is None or b is None or b == 0 else f"{a / b:.2f}×"


def frac(v):
    return NA if v is None else f"{v:.2f}"


def fracs(*vals):
    """None: could not be computed (n/a); "–": does not apply to that engine."""
    return " / ".join(v if isinstance(v, str) else frac(v) for v in vals)


def met(v, target, lower_is_better):
    if v is None:
        return NA
    return "yes" if (v <= target if lower_is_better else v >= target) else "no"


# --------------------------------------------------------------------------------------------
# transformers vs qwen3vl
# --------------------------------------------------------------------------------------------
def cmd_transformers(a):
    cfg = load_config(a.model)
    tc, vc = cfg["text_config"], cfg["vision_config"]
    hf, ours, q8 = load_json(a.hf), load_json(a.ours), load_json(a.ours_w8a8)
    peak = a.peak_gflops * 1e9 if a.peak_gflops else None
    bw = a.mem_bw_gbs * 1e9

    side = a.image_size // vc["patch_size"]
    n_patch = side * side
    prompt = int(num(ours, "prompt_tokens") or num(hf, "prompt_tokens") or 0)
    f_vis = vision_flops(vc, n_patch)
    f_ttft = f_vis + text_prefill_flops(tc, prompt)
    f_pre = text_prefill_flops(tc, a.prefill_tokens)
    b_bf16 = decode_bytes(a.model, cfg)
    b_w8 = num(q8, "decode_weight_bytes") or decode_bytes(a.model, cfg, w8a8=True)

    def per_s(flops, secs):  # achieved fraction of the bf16 peak for a timed figure
        return None if secs is None or peak is None else flops / secs / peak

    def tok_frac(flops_per_run, tokens, tok_s):
        return None if tok_s is None or peak is None else flops_per_run / (tokens / tok_s) / peak

    def bw_frac(nbytes, steps_s):
        return None if steps_s is None else nbytes * steps_s / bw

    rows = []
    hv, ov = num(hf, "vision_s"), num(ours, "vision_s")
    rows.append((f"vision tower, one {a.image_size}×{a.image_size} image ({n_patch} patches)",
                 fmt(hv, "s", 3), fmt(ov, "s", 3), ratio(hv, ov), "≤ 0.25 s", met(ov, 0.25, True),
                 fracs(per_s(f_vis, hv), per_s(f_vis, ov))))
    ht, ot = num(hf, "ttft_s"), num(ours, "ttft_s")
    rows.append((f"time to first token, image + {a.question_tokens}-token question ({prompt} tokens)",
                 fmt(ht, "s", 3), fmt(ot, "s", 3), ratio(ht, ot), "≤ 0.5 s", met(ot, 0.5, True),
                 fracs(per_s(f_ttft, ht), per_s(f_ttft, ot))))
    hp, op = num(hf, "prefill_tok_s"), num(ours, "prefill_tok_s")
    rows.append((f"text prefill, {a.prefill_tokens} tokens, bf16", fmt(hp, "tok/s", 1),
                 fmt(op, "tok/s", 1), ratio(op, hp), "≥ 600 tok/s", met(op, 600, False),
                 fracs(tok_frac(f_pre, a.prefill_tokens, hp), tok_frac(f_pre, a.prefill_tokens, op))))
    hd, od = num(hf, "decode_tok_s"), num(ours, "decode_tok_s")
    rows.append(("decode batch 1, bf16", fmt(hd, "tok/s", 2), fmt(od, "tok/s", 2), ratio(od, hd),
                 "≥ 7.0 tok/s", met(od, 7.0, False), fracs(bw_frac(b_bf16, hd), bw_frac(b_bf16, od))))
    qd = num(q8, "decode_tok_s")
    rows.append(("decode batch 1, W8A8", "–", fmt(qd, "tok/s", 2), NA, "≥ 14.5 tok/s",
                 met(qd, 14.5, False), fracs("–", bw_frac(b_w8, qd))))
    qb = num(q8, "decode_batch_tok_s")
    qb_steps = None if qb is None else qb / a.streams
    # One step of N streams is an [N, K] x [K, N_out] int8 GEMM: bandwidth and int8 compute both count.
    i8 = a.int8_peak_gops * 1e9 if a.int8_peak_gops else None
    qb_i8 = None if qb is None or i8 is None else qb * f_pre / a.prefill_tokens / i8
    rows.append((f"decode, {a.streams} concurrent streams, W8A8 (aggregate)", "–", fmt(qb, "tok/s", 1),
                 NA, "≥ 150 tok/s", met(qb, 150, False),
                 f"– / {frac(bw_frac(b_w8, qb_steps))} of bandwidth, {frac(qb_i8)} of int8 peak"))
    hr, orr = num(hf, "peak_rss_bytes"), num(ours, "peak_rss_bytes")
    kv_tokens = max(prompt, a.prefill_tokens, 16 + a.decode_tokens)
    rss_target = checkpoint_bytes(a.model) + kv_bytes(tc, kv_tokens) + 0.5e9
    g = lambda v: None if v is None else v / 1e9  # noqa: E731
    rows.append(("peak RSS, bf16", fmt(g(hr), "GB", 2), fmt(g(orr), "GB", 2), ratio(hr, orr),
                 f"≤ {rss_target / 1e9:.2f} GB", met(orr, rss_target, True), "–"))

    print("| figure | transformers 4.57.6 bf16 | qwen3vl | ratio (>1: qwen3vl better) | target | "
          "qwen3vl meets target | fraction of limit (transformers / qwen3vl) |")
    print("|---|---:|---:|---:|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    print(f"* Ratio: time figures transformers/qwen3vl, rates qwen3vl/transformers, RSS transformers/qwen3vl.")
    print(f"* Fraction of limit: vision, TTFT and prefill = useful FLOP/s ÷ bf16 peak "
          f"{fmt(a.peak_gflops, 'GFLOP/s', 0)} ({a.peak_source}); int8 peak "
          f"{fmt(a.int8_peak_gops, 'GOP/s', 0)} (the better of AMX-INT8 tiles where present and AVX512-VNNI, or vpmaddwd on AVX2-only CPUs; same method); useful FLOPs counted from the config: "
          f"vision {f_vis / 1e9:.0f} GFLOP, TTFT {f_ttft / 1e9:.0f} GFLOP, prefill {f_pre / 1e9:.0f} GFLOP "
          f"({f_pre / a.prefill_tokens / 1e9:.2f} GFLOP/token).")
    print(f"* Decode = weight bytes read per step × steps/s ÷ {a.mem_bw_gbs:g} GB/s ({a.mem_bw_source}): bf16 {b_bf16 / 1e9:.2f} GB/step, "
          f"W8A8 {b_w8 / 1e9:.2f} GB/step (int8 decoder linears and LM head + fp32 per-channel scales, as "
          f"--quantize w8a8 loads them); {a.streams} streams share one weight read per step.")
    print(f"* RSS target = checkpoint {checkpoint_bytes(a.model) / 1e9:.2f} GB + bf16 KV for "
          f"{kv_tokens} tokens {kv_bytes(tc, kv_tokens) / 1e6:.0f} MB + 0.5 GB.")
    spread = [f"{k} {min(hf[key]):.3g}–{max(hf[key]):.3g} {unit}"
              for k, key, unit in (("vision", "vision_runs_s", "s"), ("TTFT", "ttft_runs_s", "s"),
                                   ("prefill", "prefill_runs_s", "s"), ("decode", "decode_runs_tok_s", "tok/s"))
              if hf.get(key)]
    if spread:
        print(f"* transformers per-run spread (min–max): {', '.join(spread)} (prefill as seconds per run).")
    if q8:
        qp = num(q8, "prefill_tok_s")
        qp_i8 = None if qp is None or i8 is None else qp * f_pre / a.prefill_tokens / i8
        print(f"* qwen3vl W8A8 run also gave: vision {fmt(num(q8, 'vision_s'), 's', 3)}, TTFT "
              f"{fmt(num(q8, 'ttft_s'), 's', 3)}, prefill {fmt(qp, 'tok/s', 1)} ({frac(qp_i8)} of the int8 "
              f"peak), peak RSS {fmt(g(num(q8, 'peak_rss_bytes')), 'GB', 2)}.")


# --------------------------------------------------------------------------------------------
# llama.cpp vs qwen3vl
# --------------------------------------------------------------------------------------------
def llama_bench(path):
    """(pp tok/s, tg tok/s, model bytes, meta) from `llama-bench -o json`, medians of the samples."""
    runs = load_json(path) or []
    pp = tg = size = None
    meta = {}
    for r in runs:
        rate = statistics.median(r["samples_ts"]) if r.get("samples_ts") else r.get("avg_ts")
        if r.get("n_prompt", 0) > 0 and r.get("n_gen", 0) == 0:
            pp = rate
        elif r.get("n_gen", 0) > 0 and r.get("n_prompt", 0) == 0:
            tg = rate
        size = r.get("model_size", size)
        meta = {k: r.get(k) for k in ("build_commit", "cpu_info", "n_threads", "model_type")}
    return pp, tg, size, meta


def cmd_llamacpp(a):
    cfg = load_config(a.model)
    tc = cfg["text_config"]
    ours, q8 = load_json(a.ours), load_json(a.ours_w8a8)
    bpp, btg, bsize, bmeta = llama_bench(a.bench_bf16)
    qpp, qtg, qsize, qmeta = llama_bench(a.bench_q8)
    peak = a.peak_gflops * 1e9 if a.peak_gflops else None
    bw = a.mem_bw_gbs * 1e9
    f_pre = text_prefill_flops(tc, a.prefill_tokens)
    b_bf16 = decode_bytes(a.model, cfg)
    b_w8 = num(q8, "decode_weight_bytes") or decode_bytes(a.model, cfg, w8a8=True)

    def pf(tok_s):
        return None if tok_s is None or peak is None else f_pre / (a.prefill_tokens / tok_s) / peak

    def pf8(tok_s):  # int8 GEMMs (Q8_0, W8A8) against the VNNI int8 peak
        i8 = a.int8_peak_gops * 1e9 if a.int8_peak_gops else None
        return None if tok_s is None or i8 is None else f_pre / (a.prefill_tokens / tok_s) / i8

    def df(nbytes, tok_s):
        return None if tok_s is None or nbytes is None else nbytes * tok_s / bw

    op, od = num(ours, "prefill_tok_s"), num(ours, "decode_tok_s")
    wp, wd = num(q8, "prefill_tok_s"), num(q8, "decode_tok_s")
    n = a.prefill_tokens
    rows = [
        (f"text prefill pp{n}: llama.cpp BF16 vs qwen3vl bf16", fmt(bpp, "tok/s", 1), fmt(op, "tok/s", 1),
         ratio(op, bpp), "≥ 600 tok/s", fracs(pf(bpp), pf(op))),
        (f"text prefill pp{n}: llama.cpp Q8_0 vs qwen3vl bf16 (the issue's row)", fmt(qpp, "tok/s", 1),
         fmt(op, "tok/s", 1), ratio(op, qpp), "≥ 600 tok/s", f"{frac(pf8(qpp))} (int8) / {frac(pf(op))}"),
        (f"text prefill pp{n}: llama.cpp Q8_0 vs qwen3vl W8A8", fmt(qpp, "tok/s", 1), fmt(wp, "tok/s", 1),
         ratio(wp, qpp), "–", f"{fracs(pf8(qpp), pf8(wp))} (int8)"),
        (f"decode tg{a.decode_tokens} batch 1: llama.cpp BF16 vs qwen3vl bf16", fmt(btg, "tok/s", 2),
         fmt(od, "tok/s", 2), ratio(od, btg), "≥ 7.0 tok/s", fracs(df(bsize, btg), df(b_bf16, od))),
        (f"decode tg{a.decode_tokens} batch 1: llama.cpp Q8_0 vs qwen3vl W8A8", fmt(qtg, "tok/s", 2),
         fmt(wd, "tok/s", 2), ratio(wd, qtg), "≥ 14.5 tok/s", fracs(df(qsize, qtg), df(b_w8, wd))),
    ]
    print("| figure | llama.cpp | qwen3vl | ratio (qwen3vl / llama.cpp) | target | "
          "fraction of limit (llama.cpp / qwen3vl) |")
    print("|---|---:|---:|---:|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    meta = bmeta or qmeta
    if meta:
        print(f"* llama.cpp build {meta.get('build_commit')}, {meta.get('n_threads')} threads, "
              f"CPU \"{meta.get('cpu_info')}\"; llama-bench medians of the per-repeat samples.")
    print(f"* Prefill fraction = useful FLOP/s ÷ bf16 peak {fmt(a.peak_gflops, 'GFLOP/s', 0)} "
          f"({a.peak_source}), {f_pre / n / 1e9:.2f} GFLOP/token; Q8_0 and W8A8 (int8 dot products) ÷ int8 "
          f"peak {fmt(a.int8_peak_gops, 'GOP/s', 0)} (the better of AMX-INT8 tiles where present and AVX512-VNNI, or vpmaddwd on AVX2-only CPUs; same method).")
    gb = lambda v: NA if v is None else f"{v / 1e9:.2f}"  # noqa: E731
    print(f"* Decode fraction = bytes per token × tok/s ÷ {a.mem_bw_gbs:g} GB/s ({a.mem_bw_source}); bytes: GGUF weights "
          f"(llama-bench model_size) BF16 {gb(bsize)} GB, Q8_0 {gb(qsize)} GB; qwen3vl bf16 "
          f"{gb(b_bf16)} GB, W8A8 {gb(b_w8)} GB (estimate unless bench-model reports decode_weight_bytes).")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", required=True, help="the Qwen3-VL checkpoint dir (config + safetensors)")
    common.add_argument("--ours", required=True, help="bench-model --json output, bf16")
    common.add_argument("--ours-w8a8", default="", help="bench-model --quantize w8a8 --json output")
    common.add_argument("--peak-gflops", type=float, default=None)
    common.add_argument("--peak-source", default="given")
    common.add_argument("--int8-peak-gops", type=float, default=None,
                        help="int8 peak (AVX512-VNNI, or AVX2 vpmaddwd), the ceiling for W8A8 prefill and multi-stream decode")
    common.add_argument("--mem-bw-gbs", type=float, default=25.0)
    common.add_argument("--mem-bw-source", default="given")
    common.add_argument("--prefill-tokens", type=int, default=128)
    common.add_argument("--decode-tokens", type=int, default=32)
    t = sub.add_parser("transformers", parents=[common])
    t.add_argument("--hf", required=True)
    t.add_argument("--image-size", type=int, default=448)
    t.add_argument("--question-tokens", type=int, default=19)
    t.add_argument("--streams", type=int, default=16)
    l = sub.add_parser("llamacpp", parents=[common])  # noqa: E741
    l.add_argument("--bench-bf16", required=True)
    l.add_argument("--bench-q8", required=True)
    a = p.parse_args()
    {"transformers": cmd_transformers, "llamacpp": cmd_llamacpp}[a.cmd](a)


if __name__ == "__main__":
    main()
