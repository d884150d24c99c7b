#!/usr/bin/env python3
"""Generate tiny random Qwen3-VL checkpoints and reference fixtures (logits, positions,
greedy continuations, debug activations) with Hugging Face transformers.

Writes (relative to the repository root):
  tests/fixtures/models/{dense_tied,dense_untied,moe}/   config.json, generation_config.json,
                                                         bf16 safetensors (sharded for dense_untied)
  tests/fixtures/cases/<model>__<case>__<dtype>.safetensors
  tests/fixtures/cases/manifest.json

Everything is deterministic (fixed seeds, CPU, 1 thread). See scripts/ref/README.md.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from transformers import (
    GenerationConfig,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLMoeConfig,
    Qwen3VLMoeForConditionalGeneration,
)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# ---------------------------------------------------------------------------------------------
# Tiny configuration (spec §8 shapes scaled down; q dim 128 != hidden 64 like the real 4B)
# ---------------------------------------------------------------------------------------------
IMAGE_TOKEN = 500
VIDEO_TOKEN = 501
VISION_START = 502
VISION_END = 503
PAD_BOS = 504
EOS = 505
TEXT_TOKEN_MAX = 490  # random text tokens are drawn from [0, 490)

N_GEN = 6
INIT_STD = 0.08

TEXT_COMMON = dict(
    vocab_size=512,
    hidden_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=32,
    intermediate_size=96,
    rms_norm_eps=1e-6,
    rope_theta=5000000.0,
    rope_scaling={"rope_type": "default", "mrope_section": [6, 5, 5], "mrope_interleaved": True},
    max_position_embeddings=4096,
    hidden_act="silu",
    attention_bias=False,
    attention_dropout=0.0,
    bos_token_id=PAD_BOS,
    eos_token_id=EOS,
)
MOE_EXTRA = dict(
    num_experts=8,
    num_experts_per_tok=2,
    moe_intermediate_size=48,
    norm_topk_prob=True,
    decoder_sparse_step=1,
    mlp_only_layers=[],
)
VISION = dict(
    depth=4,
    hidden_size=64,
    num_heads=4,
    intermediate_size=96,
    out_hidden_size=64,
    patch_size=16,
    temporal_patch_size=2,
    spatial_merge_size=2,
    in_channels=3,
    num_position_embeddings=2304,
    hidden_act="gelu_pytorch_tanh",
    deepstack_visual_indexes=[0, 2, 3],
)
TOP = dict(
    image_token_id=IMAGE_TOKEN,
    video_token_id=VIDEO_TOKEN,
    vision_start_token_id=VISION_START,
    vision_end_token_id=VISION_END,
)

MODELS = {
    # name: (config class, model class, tie, seed, shard into 2 files)
    "dense_tied": (Qwen3VLConfig, Qwen3VLForConditionalGeneration, True, 1001, False),
    "dense_untied": (Qwen3VLConfig, Qwen3VLForConditionalGeneration, False, 1002, True),
    "moe": (Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration, False, 1003, False),
}

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}


def make_config(name):
    cfg_cls, _, tie, _, _ = MODELS[name]
    text = dict(TEXT_COMMON, tie_word_embeddings=tie)
    if name == "moe":
        text.update(MOE_EXTRA)
    return cfg_cls(text_config=text, vision_config=dict(VISION), tie_word_embeddings=tie, **TOP)


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------
def redraw_parameters(model, seed):
    """Every parameter ~ N(0, 0.08); norm weights = 1 + N(0, 0.08); biases ~ N(0, 0.08)."""
    g = torch.Generator().manual_seed(seed)
    norm_params = set()
    for mod in model.modules():
        if isinstance(mod, nn.LayerNorm) or type(mod).__name__.endswith("RMSNorm"):
            norm_params.add(id(mod.weight))
    with torch.no_grad():
        # named_parameters() de-duplicates shared (tied) parameters; order is deterministic.
        for pname, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32) * INIT_STD
            if id(p) in norm_params:
                p.copy_(1.0 + noise)
            else:
                p.copy_(noise)


def build_checkpoint(name, out_dir):
    cfg_cls, model_cls, tie, seed, shard = MODELS[name]
    config = make_config(name)
    torch.manual_seed(seed)
    model = model_cls(config)
    model.eval()
    redraw_parameters(model, seed)
    model = model.to(torch.bfloat16)  # the checkpoint = the model rounded to bf16 once
    model.generation_config = GenerationConfig(
        bos_token_id=PAD_BOS,
        pad_token_id=PAD_BOS,
        eos_token_id=[EOS, PAD_BOS],
        do_sample=True,
        temperature=0.7,
        top_k=20,
        top_p=0.8,
        repetition_penalty=1.0,
    )
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    if shard:
        total = sum(p.numel() * p.element_size() for p in model.state_dict().values())
        max_shard = int(total * 0.6)
    else:
        max_shard = "50MB"
    model.save_pretrained(out_dir, safe_serialization=True, max_shard_size=max_shard)
    # save_pretrained drops text_config.tie_word_embeddings when it equals the class default (False).
    # Make it explicit (same value as the top level), re-serialised exactly like HF does.
    cpath = os.path.join(out_dir, "config.json")
    with open(cpath) as f:
        cfg = json.load(f)
    assert cfg["tie_word_embeddings"] == tie
    assert cfg["text_config"].get("tie_word_embeddings", tie) == tie
    cfg["text_config"]["tie_word_embeddings"] = tie
    with open(cpath, "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return model


def checkpoint_tensors(model_dir):
    """name -> (dtype, shape), read back from the saved safetensors files."""
    idx = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    out = {}
    for fn in files:
        with safe_open(os.path.join(model_dir, fn), framework="pt") as f:
            for k in f.keys():
                t = f.get_slice(k)
                out[k] = (t.get_dtype(), list(t.get_shape()), fn)
    return out, files


def check_checkpoint_keys(name, model_dir):
    """Assert the on-disk key names/shapes follow spec §1."""
    tensors, files = checkpoint_tensors(model_dir)
    cfg = make_config(name)
    T, V = cfg.text_config, cfg.vision_config
    H, hd, nH, nKV = T.hidden_size, T.head_dim, T.num_attention_heads, T.num_key_value_heads
    Hv, Iv, O = V.hidden_size, V.intermediate_size, V.out_hidden_size
    exp = {}
    v = "model.visual."
    exp[v + "patch_embed.proj.weight"] = [Hv, 3, 2, 16, 16]
    exp[v + "patch_embed.proj.bias"] = [Hv]
    exp[v + "pos_embed.weight"] = [2304, Hv]
    for i in range(V.depth):
        b = f"{v}blocks.{i}."
        for n in ("norm1", "norm2"):
            exp[b + n + ".weight"] = [Hv]
            exp[b + n + ".bias"] = [Hv]
        exp[b + "attn.qkv.weight"] = [3 * Hv, Hv]
        exp[b + "attn.qkv.bias"] = [3 * Hv]
        exp[b + "attn.proj.weight"] = [Hv, Hv]
        exp[b + "attn.proj.bias"] = [Hv]
        exp[b + "mlp.linear_fc1.weight"] = [Iv, Hv]
        exp[b + "mlp.linear_fc1.bias"] = [Iv]
        exp[b + "mlp.linear_fc2.weight"] = [Hv, Iv]
        exp[b + "mlp.linear_fc2.bias"] = [Hv]
    for pre, nd in [(v + "merger.", Hv)] + [(f"{v}deepstack_merger_list.{k}.", 4 * Hv) for k in range(3)]:
        exp[pre + "norm.weight"] = [nd]
        exp[pre + "norm.bias"] = [nd]
        exp[pre + "linear_fc1.weight"] = [4 * Hv, 4 * Hv]
        exp[pre + "linear_fc1.bias"] = [4 * Hv]
        exp[pre + "linear_fc2.weight"] = [O, 4 * Hv]
        exp[pre + "linear_fc2.bias"] = [O]
    lm = "model.language_model."
    exp[lm + "embed_tokens.weight"] = [T.vocab_size, H]
    exp[lm + "norm.weight"] = [H]
    for l in range(T.num_hidden_layers):
        b = f"{lm}layers.{l}."
        exp[b + "input_layernorm.weight"] = [H]
        exp[b + "post_attention_layernorm.weight"] = [H]
        exp[b + "self_attn.q_proj.weight"] = [nH * hd, H]
        exp[b + "self_attn.k_proj.weight"] = [nKV * hd, H]
        exp[b + "self_attn.v_proj.weight"] = [nKV * hd, H]
        exp[b + "self_attn.o_proj.weight"] = [H, nH * hd]
        exp[b + "self_attn.q_norm.weight"] = [hd]
        exp[b + "self_attn.k_norm.weight"] = [hd]
        if name == "moe":
            E, Im = T.num_experts, T.moe_intermediate_size
            exp[b + "mlp.gate.weight"] = [E, H]
            exp[b + "mlp.experts.gate_up_proj"] = [E, H, 2 * Im]
            exp[b + "mlp.experts.down_proj"] = [E, Im, H]
        else:
            I = T.intermediate_size
            exp[b + "mlp.gate_proj.weight"] = [I, H]
            exp[b + "mlp.up_proj.weight"] = [I, H]
            exp[b + "mlp.down_proj.weight"] = [H, I]
    if not MODELS[name][2]:
        exp["lm_head.weight"] = [T.vocab_size, H]
    got = {k: s for k, (_, s, _) in tensors.items()}
    missing = sorted(set(exp) - set(got))
    extra = sorted(set(got) - set(exp))
    bad = sorted(k for k in exp if k in got and got[k] != exp[k])
    dtypes = sorted({d for d, _, _ in tensors.values()})
    assert not missing and not extra and not bad, (name, missing, extra, bad)
    assert dtypes == ["BF16"], dtypes
    if name == "dense_untied":
        assert len(files) == 2, files
    return tensors, files


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------
def build_cases():
    rs = np.random.RandomState(20251)

    def text(n):
        return rs.randint(0, TEXT_TOKEN_MAX, size=n).tolist()

    def vis(pad, gh, gw):
        return [VISION_START] + [pad] * (gh * gw // 4) + [VISION_END]

    def video(grid, ts_len=3):
        t, gh, gw = grid
        ids = []
        for _ in range(t):  # per temporal slice: "<t seconds>" stand-in text + vision block
            ids += text(ts_len) + vis(VIDEO_TOKEN, gh, gw)
        return ids

    cases = {}
    cases["text"] = dict(ids=text(24), images=[], videos=[])
    g1 = (1, 4, 6)
    cases["image1"] = dict(ids=text(5) + vis(IMAGE_TOKEN, 4, 6) + text(14), images=[g1], videos=[])
    ga, gb = (1, 4, 6), (1, 6, 4)
    cases["image2"] = dict(
        ids=text(4) + vis(IMAGE_TOKEN, 4, 6) + text(6) + vis(IMAGE_TOKEN, 6, 4) + text(10),
        images=[ga, gb],
        videos=[],
    )
    gv = (3, 4, 4)
    cases["video"] = dict(ids=text(4) + video(gv) + text(10), images=[], videos=[gv])
    gi, gv2 = (1, 4, 4), (2, 4, 6)
    cases["mixed"] = dict(
        ids=text(4) + vis(IMAGE_TOKEN, 4, 4) + text(5) + video(gv2) + text(9),
        images=[gi],
        videos=[gv2],
    )
    # pixels: uniform [-1, 1], f32, one generator per case (shared by all models / dtypes)
    for ci, (cname, c) in enumerate(cases.items()):
        g = torch.Generator().manual_seed(777 + ci)
        for key, grids in (("pixel_values", c["images"]), ("pixel_values_videos", c["videos"])):
            if grids:
                n = sum(t * h * w for t, h, w in grids)
                c[key] = torch.rand((n, 1536), generator=g, dtype=torch.float32) * 2.0 - 1.0
        c["input_ids"] = torch.tensor(c["ids"], dtype=torch.int64)
        if c["images"]:
            c["image_grid_thw"] = torch.tensor(c["images"], dtype=torch.int64)
        if c["videos"]:
            c["video_grid_thw"] = torch.tensor(c["videos"], dtype=torch.int64)
        assert 20 <= len(c["ids"]) <= 120, (cname, len(c["ids"]))
    return cases


def model_inputs(case, zero_pixels=False):
    kw = dict(
        input_ids=case["input_ids"][None],
        attention_mask=torch.ones(1, len(case["ids"]), dtype=torch.int64),
    )
    for k in ("pixel_values", "pixel_values_videos"):
        if k in case:
            kw[k] = torch.zeros_like(case[k]) if zero_pixels else case[k].clone()
    for k in ("image_grid_thw", "video_grid_thw"):
        if k in case:
            kw[k] = case[k].clone()
    return kw


def independent_rope_index(ids, images, videos, merge=2):
    """Re-implementation of spec §4.4 (for cross-checking HF get_rope_index)."""
    items = [("img", g) for g in images]
    vid_items = []
    for t, h, w in videos:
        vid_items += [(1, h, w)] * t
    img_q, vid_q = list(images), vid_items
    pos = []
    s = 0
    i = 0
    n = len(ids)
    while i < n:
        tok = ids[i]
        if tok in (IMAGE_TOKEN, VIDEO_TOKEN):
            t, h, w = (img_q.pop(0) if tok == IMAGE_TOKEN else vid_q.pop(0))
            hh, ww = h // merge, w // merge
            for ti in range(t):
                for r in range(hh):
                    for c in range(ww):
                        pos.append((s + ti, s + r, s + c))
            i += t * hh * ww
            s = s + max(t - 1, hh - 1, ww - 1) + 1
        else:
            pos.append((s, s, s))
            s += 1
            i += 1
    p = torch.tensor(pos, dtype=torch.int64).T
    delta = int(p.max()) + 1 - n
    return p, delta


# ---------------------------------------------------------------------------------------------
# Reference runs
# ---------------------------------------------------------------------------------------------
def load_ref(model_dir, model_cls, dtype):
    m = model_cls.from_pretrained(model_dir, dtype=dtype, attn_implementation="eager")
    m.eval()
    # Generation used for fixtures: pure greedy, no EOS (exactly N_GEN tokens).
    m.generation_config = GenerationConfig(bos_token_id=PAD_BOS, pad_token_id=PAD_BOS)
    return m


@torch.no_grad()
def run_case(model, case, debug):
    model.model.rope_deltas = None
    kw = model_inputs(case)
    seq = len(case["ids"])
    res = {}

    pos, delta = model.model.get_rope_index(
        kw["input_ids"], kw.get("image_grid_thw"), kw.get("video_grid_thw"), kw["attention_mask"]
    )
    res["position_ids"] = pos[:, 0, :].to(torch.int64).contiguous()
    res["rope_delta"] = delta.reshape(1).to(torch.int64)

    captured = {}

    def pre_hook(mod, args, kwargs):
        captured["deepstack"] = kwargs.get("deepstack_visual_embeds")
        captured["visual_pos_masks"] = kwargs.get("visual_pos_masks")
        captured["inputs_embeds"] = kwargs.get("inputs_embeds")

    layer_outs = []

    def layer_hook(mod, args, out):
        layer_outs.append(out[0] if isinstance(out, tuple) else out)  # no clone: sees in-place deepstack add

    router_logits = []

    def gate_hook(mod, args, out):
        router_logits.append(out.detach().float().clone())

    h1 = model.model.language_model.register_forward_pre_hook(pre_hook, with_kwargs=True)
    hs = [l.register_forward_hook(layer_hook) for l in model.model.language_model.layers]
    is_moe = hasattr(model.model.language_model.layers[0].mlp, "experts")
    if is_moe:
        hs += [l.mlp.gate.register_forward_hook(gate_hook) for l in model.model.language_model.layers]
    model.model.rope_deltas = None
    out = model(**kw, use_cache=False, output_hidden_states=debug)
    h1.remove()
    for h in hs:
        h.remove()
    logits = out.logits[0].float()
    res["logits"] = logits.contiguous()
    if is_moe:
        rl = torch.stack(router_logits)  # [L, seq, E] (router logits as computed in the model dtype)
        assert rl.shape[:2] == (model.config.text_config.num_hidden_layers, seq)
        res["_router_logits"] = rl
        # small; kept for BOTH dtypes so a port can spot near-tie routing decisions (see README)
        res["router_logits"] = rl.contiguous()
    assert logits.shape == (seq, model.config.text_config.vocab_size)

    if debug:
        hsd = out.hidden_states
        L = model.config.text_config.num_hidden_layers
        assert hsd is not None and len(hsd) == L + 1, None if hsd is None else len(hsd)
        stack = torch.stack([h[0].float() for h in hsd])
        # Verify semantics (transformers 4.57.6, Qwen3VL*ForConditionalGeneration):
        # [0] = decoder input embeds (after the visual scatter), [l+1] = output of decoder layer l
        # *including* the deepstack add for l < 3 (HF records the tensor, then adds in place);
        # [L] = output of the last layer BEFORE the final norm (not tied to last_hidden_state here).
        assert torch.equal(stack[0], captured["inputs_embeds"][0].float())
        for l in range(L):
            assert torch.equal(stack[l + 1], layer_outs[l][0].float()), l
        res["hidden_states"] = stack.contiguous()
        if "pixel_values" in kw:
            emb, _ = model.model.get_image_features(kw["pixel_values"], kw["image_grid_thw"])
            res["image_embeds"] = torch.cat(emb, 0).float().contiguous()
        if "pixel_values_videos" in kw:
            emb, _ = model.model.get_video_features(kw["pixel_values_videos"], kw["video_grid_thw"])
            res["video_embeds"] = torch.cat(emb, 0).float().contiguous()
        if captured["deepstack"] is not None:
            n_vis = int(captured["visual_pos_masks"].sum())
            assert len(captured["deepstack"]) == 3
            for k, d in enumerate(captured["deepstack"]):
                assert d.shape[0] == n_vis
                res[f"deepstack_{k}"] = d.float().contiguous()

    # Greedy continuation through HF generate (KV-cache path)
    model.model.rope_deltas = None
    gen = model.generate(**model_inputs(case), do_sample=False, max_new_tokens=N_GEN, min_new_tokens=0)
    new = gen[0, seq:]
    assert new.numel() == N_GEN, new
    res["generated"] = new.to(torch.int64).contiguous()

    # Cross-check: greedy without cache (full re-forward each step)
    ids = list(case["ids"])
    nocache = []
    for _ in range(N_GEN):
        c2 = dict(case)
        c2["ids"] = ids
        c2["input_ids"] = torch.tensor(ids, dtype=torch.int64)
        model.model.rope_deltas = None
        lg = model(**model_inputs(c2), use_cache=False).logits[0, -1]
        nxt = int(lg.float().argmax())
        nocache.append(nxt)
        ids = ids + [nxt]
    res["_nocache_greedy"] = nocache
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures"))
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    models_dir = os.path.join(args.out, "models")
    cases_dir = os.path.join(args.out, "cases")
    if os.path.isdir(cases_dir):
        shutil.rmtree(cases_dir)
    os.makedirs(cases_dir)

    cases = build_cases()
    manifest = {
        "generator": "scripts/ref/gen_model_fixtures.py",
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "numpy": np.__version__,
        },
        "torch_num_threads": 1,
        "attn_implementation": "eager",
        "n_generated": N_GEN,
        "special_ids": dict(TOP, pad_token_id=PAD_BOS, bos_token_id=PAD_BOS, eos_token_id=EOS),
        "models": {},
        "cases": {},
        "files": [],
        "sanity": {},
    }
    for cname, c in cases.items():
        manifest["cases"][cname] = {
            "seq_len": len(c["ids"]),
            "image_grid_thw": c["images"],
            "video_grid_thw": c["videos"],
            "n_image_tokens": sum(1 for t in c["ids"] if t == IMAGE_TOKEN),
            "n_video_tokens": sum(1 for t in c["ids"] if t == VIDEO_TOKEN),
        }

    print(f"torch {torch.__version__}  transformers {transformers.__version__}")
    sanity = manifest["sanity"]
    for mname, (cfg_cls, model_cls, tie, seed, shard) in MODELS.items():
        mdir = os.path.join(models_dir, mname)
        build_checkpoint(mname, mdir)
        tensors, files = check_checkpoint_keys(mname, mdir)
        size = sum(os.path.getsize(os.path.join(mdir, f)) for f in os.listdir(mdir))
        manifest["models"][mname] = {
            "dir": f"tests/fixtures/models/{mname}",
            "model_type": cfg_cls.model_type,
            "tie_word_embeddings": tie,
            "weight_files": files,
            "n_tensors": len(tensors),
            "bytes": size,
        }
        print(f"\n== model {mname}: {len(tensors)} tensors in {files}, {size} bytes on disk")

        refs = {d: load_ref(mdir, model_cls, dt) for d, dt in DTYPES.items()}
        for cname, c in cases.items():
            results = {}
            for dname, model in refs.items():
                debug = dname == "f32"
                r = run_case(model, c, debug)
                results[dname] = r
                tensors_out = {"input_ids": c["input_ids"].clone()}
                for k in ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw"):
                    if k in c:
                        tensors_out[k] = c[k].clone().contiguous()
                for k, v in r.items():
                    if not k.startswith("_"):
                        tensors_out[k] = v
                fn = f"{mname}__{cname}__{dname}.safetensors"
                path = os.path.join(cases_dir, fn)
                save_file(
                    tensors_out,
                    path,
                    # a single metadata key: safetensors writes metadata maps in hash order,
                    # which would make the files differ byte-wise between runs
                    metadata={
                        "fixture": json.dumps(
                            {
                                "model": mname,
                                "case": cname,
                                "dtype": dname,
                                "torch": torch.__version__,
                                "transformers": transformers.__version__,
                            },
                            sort_keys=True,
                        )
                    },
                )
                with open(path, "rb") as f:
                    sha = hashlib.sha256(f.read()).hexdigest()
                manifest["files"].append(
                    {
                        "file": f"tests/fixtures/cases/{fn}",
                        "model": mname,
                        "case": cname,
                        "dtype": dname,
                        "seq_len": len(c["ids"]),
                        "bytes": os.path.getsize(path),
                        "sha256": sha,
                        "tensors": {k: [str(v.dtype).replace("torch.", ""), list(v.shape)] for k, v in tensors_out.items()},
                    }
                )

            # ---- sanity checks ----
            key = f"{mname}__{cname}"
            s = {}
            lf, lb = results["f32"]["logits"], results["bf16"]["logits"]
            s["logits_std_f32"] = round(float(lf.std()), 4)
            s["logits_std_bf16"] = round(float(lb.std()), 4)
            s["argmax_agree_f32_bf16"] = round(float((lf.argmax(-1) == lb.argmax(-1)).float().mean()), 4)
            s["max_abs_diff_f32_bf16"] = round(float((lf - lb).abs().max()), 4)
            for d in DTYPES:
                s[f"generated_{d}"] = results[d]["generated"].tolist()
                s[f"generate_eq_nocache_greedy_{d}"] = results[d]["generated"].tolist() == results[d]["_nocache_greedy"]
            if mname == "moe":
                k = MOE_EXTRA["num_experts_per_tok"]
                sel = {}
                for d in DTYPES:
                    pr = torch.softmax(results[d]["_router_logits"], -1)
                    sel[d] = torch.topk(pr, k, -1).indices.sort(-1).values
                diff = (sel["f32"] != sel["bf16"]).any(-1)  # [L, seq]
                p32 = torch.softmax(results["f32"]["_router_logits"], -1).sort(-1, descending=True).values
                margin = p32[..., k - 1] - p32[..., k]
                s["routing_diff_f32_bf16_(layer,pos)"] = [list(map(int, x)) for x in diff.nonzero().tolist()]
                s["router_min_topk_margin_f32"] = float(margin.min())
            ref_pos, ref_delta = independent_rope_index(c["ids"], c["images"], c["videos"])
            for d in DTYPES:
                assert torch.equal(results[d]["position_ids"], ref_pos), (key, d)
                assert int(results[d]["rope_delta"]) == ref_delta, (key, d)
            s["position_ids_max"] = int(ref_pos.max())
            s["rope_delta"] = ref_delta
            if c["images"] or c["videos"]:
                m32 = refs["f32"]
                m32.model.rope_deltas = None
                with torch.no_grad():
                    lz = m32(**model_inputs(c, zero_pixels=True), use_cache=False).logits[0].float()
                first_vis = min(i for i, t in enumerate(c["ids"]) if t in (IMAGE_TOKEN, VIDEO_TOKEN))
                s["zero_pixels_max_abs_logit_diff_f32"] = round(float((lz - lf).abs().max()), 4)
                s["zero_pixels_prefix_max_abs_diff_f32"] = float((lz[:first_vis] - lf[:first_vis]).abs().max())
                assert s["zero_pixels_max_abs_logit_diff_f32"] > 1e-2, key
            sanity[key] = s
            print(f"  {cname:7s} seq={len(c['ids']):3d} " + " ".join(f"{k}={v}" for k, v in s.items()))
            assert s["logits_std_f32"] > 0.3, key

    # §4.4 walk-through for image1 (grid (1,4,6) -> merged (1,2,3))
    c = cases["image1"]
    pos, delta = independent_rope_index(c["ids"], c["images"], c["videos"])
    vs = c["ids"].index(VISION_START)
    print(
        f"\nimage1 positions: vision_start at {vs} -> pos {pos[:, vs].tolist()}; first image token "
        f"{pos[:, vs + 1].tolist()}; last image token {pos[:, vs + 6].tolist()}; vision_end {pos[:, vs + 7].tolist()}; "
        f"max {int(pos.max())}; seq {len(c['ids'])}; rope_delta {delta} (expect -(6-3) = -3)"
    )
    sanity["image1_positions"] = {
        "vision_start": pos[:, vs].tolist(),
        "first_image_token": pos[:, vs + 1].tolist(),
        "last_image_token": pos[:, vs + 6].tolist(),
        "vision_end": pos[:, vs + 7].tolist(),
        "max": int(pos.max()),
        "rope_delta": delta,
    }
    assert delta == -3

    with open(os.path.join(cases_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    total = 0
    for root, _, fns in os.walk(args.out):
        for fn in fns:
            total += os.path.getsize(os.path.join(root, fn))
    print(f"\ntotal fixture bytes under {args.out}: {total}")


if __name__ == "__main__":
    main()
