#!/usr/bin/env python3
"""The transformers half of scripts/compare/transformers.sh (run it with the pinned reference venv).

It mirrors `qwen3vl bench-model` (src/cli/bench_model.rs) figure by figure, so that both engines
do the same work:
  * vision: `model.model.visual(pixel_values, grid_thw)` for one image of --image-size pixels
    (448 -> grid (1, 28, 28), 784 patches of 1536 values, the same deterministic pixel pattern);
  * ttft: one forward of the chat-shaped prompt (3 text tokens, vision_start, 196 image tokens,
    vision_end, question + 5 tokens) including the vision tower, then argmax of the last logits;
  * prefill: one forward of --prefill-tokens text tokens;
  * decode: greedy batch-1 decode of --decode-tokens tokens through the KV cache after a 16-token
    prompt (only the decode loop is timed);
  * peak RSS of this process (getrusage), so run one engine per process.
The prompt ids use the same formula as bench-model's `text_ids`. Prefill calls pass
`logits_to_keep=1`, as `generate()` does and as bench-model does (it only computes the last row of
logits); otherwise transformers would also pay for a [T, 151936] lm_head product.

Results are medians over --repeats after --warmup untimed runs per figure (warm-up makes the
baseline as fast as it can be: first calls pay for oneDNN primitive creation).
"""

import argparse
import json
import resource
import statistics
import sys
import time


def text_ids(n, vocab, salt):
    """bench-model's deterministic pseudo-random ids (below the special-token range)."""
    top = min(max(vocab, 2), 151_643)
    return [(i * 7919 + salt * 104_729 + 1000) % top for i in range(n)]


def timed(fn, reps, warmup):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def cmd_bench(a):
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    model = Qwen3VLForConditionalGeneration.from_pretrained(
        a.model, dtype=torch.bfloat16, attn_implementation=a.attn
    ).eval()
    load_s = time.perf_counter() - t0
    cfg = model.config
    vc = cfg.vision_config
    vocab = cfg.text_config.vocab_size
    want = lambda f: not a.only or f in a.only.split(",")  # noqa: E731
    print(
        f"transformers: {a.model}, bf16, {torch.get_num_threads()} threads, attn {a.attn}, "
        f"loaded in {load_s:.1f}s",
        file=sys.stderr,
    )

    side = a.image_size // vc.patch_size
    n_patch = side * side
    patch_dim = vc.in_channels * vc.temporal_patch_size * vc.patch_size**2
    # Same values as bench-model: ((i * 37 % 255) / 127.5) - 1.
    idx = torch.arange(n_patch * patch_dim, dtype=torch.int64)
    pixels = ((idx * 37 % 255).to(torch.float32) / 127.5 - 1.0).view(n_patch, patch_dim)
    grid = torch.tensor([[1, side, side]], dtype=torch.int64)
    res = {
        "engine": "transformers",
        "model": a.model,
        "dtype": "bf16",
        "attn": a.attn,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "load_s": load_s,
        "repeats": a.repeats,
        "warmup": a.warmup,
        "image_size": a.image_size,
        "prefill_tokens": a.prefill_tokens,
        "decode_tokens": a.decode_tokens,
    }

    with torch.inference_mode():
        if want("vision"):
            visual = model.model.visual

            def vision():
                # get_image_features casts pixels to the tower dtype; keep that cast in the timing.
                visual(pixels.type(visual.dtype), grid_thw=grid)

            t = timed(vision, a.repeats, a.warmup)
            res["vision_s"] = statistics.median(t)
            res["vision_runs_s"] = t

        n_img = n_patch // (vc.spatial_merge_size**2)
        ids = (
            text_ids(3, vocab, 1)
            + [cfg.vision_start_token_id]
            + [cfg.image_token_id] * n_img
            + [cfg.vision_end_token_id]
            + text_ids(a.question_tokens + 5, vocab, 2)
        )
        res["prompt_tokens"] = len(ids)
        mm_ids = torch.tensor([ids], dtype=torch.int64)

        def first_token(input_ids, **extra):
            out = model(input_ids=input_ids, use_cache=True, logits_to_keep=1, **extra)
            return out, int(out.logits[0, -1].argmax())

        if want("ttft"):
            t = timed(
                lambda: first_token(mm_ids, pixel_values=pixels, image_grid_thw=grid),
                a.repeats,
                a.warmup,
            )
            res["ttft_s"] = statistics.median(t)
            res["ttft_runs_s"] = t

        if want("prefill"):
            text = torch.tensor([text_ids(a.prefill_tokens, vocab, 3)], dtype=torch.int64)
            t = timed(lambda: first_token(text), a.repeats, a.warmup)
            res["prefill_s"] = statistics.median(t)
            res["prefill_tok_s"] = a.prefill_tokens / res["prefill_s"]
            res["prefill_runs_s"] = t

        if want("decode"):
            short = torch.tensor([text_ids(16, vocab, 4)], dtype=torch.int64)
            rates = []
            for rep in range(a.warmup + a.repeats):
                out, tok = first_token(short)
                cache = out.past_key_values
                pos = short.shape[1]
                t = time.perf_counter()
                for _ in range(a.decode_tokens):
                    # cache_position makes Qwen3-VL reuse the stored rope_deltas (generate() does the same).
                    out = model(
                        input_ids=torch.tensor([[tok]]),
                        past_key_values=cache,
                        use_cache=True,
                        cache_position=torch.tensor([pos]),
                        logits_to_keep=1,
                    )
                    cache = out.past_key_values
                    tok = int(out.logits[0, -1].argmax())
                    pos += 1
                if rep >= a.warmup:
                    rates.append(a.decode_tokens / (time.perf_counter() - t))
            res["decode_tok_s"] = statistics.median(rates)
            res["decode_runs_tok_s"] = rates

    res["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with open(a.json, "w") as f:
        json.dump(res, f, indent=2)
    for k in ("vision_s", "ttft_s", "prefill_tok_s", "decode_tok_s", "peak_rss_bytes"):
        if k in res:
            print(f"  {k}: {res[k]:.4g}", file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench", help="bench-model's figures with transformers")
    b.add_argument("--model", required=True)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--warmup", type=int, default=1)
    b.add_argument("--image-size", type=int, default=448)
    b.add_argument("--question-tokens", type=int, default=19)
    b.add_argument("--prefill-tokens", type=int, default=128)
    b.add_argument("--decode-tokens", type=int, default=32)
    b.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"],
                   help="transformers attention implementation (sdpa is its default and the faster one)")
    b.add_argument("--only", default="", help="comma-separated subset of vision,ttft,prefill,decode")
    b.add_argument("--json", required=True)
    a = p.parse_args()
    cmd_bench(a)


if __name__ == "__main__":
    main()
