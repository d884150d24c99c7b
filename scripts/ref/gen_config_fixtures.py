#!/usr/bin/env python3
"""Fixtures for odd-but-valid Qwen3-VL configs: configs that transformers 4.57.6 builds and runs
although they break a "natural" rule (see docs/config-audit.md for the whole rule table).

Writes (relative to the repository root):
  tests/fixtures/configs/<model>/                 config.json + model.safetensors (bf16)
  tests/fixtures/configs/<model>__<case>.safetensors   inputs + f32 reference outputs
  tests/fixtures/configs/manifest.json

Each model is tiny (vocab 128, hidden 64, 1-2 layers, vision hidden 8, patch 8) and exercises
one family of rules; the reference runs in float32 with eager attention on 1 CPU thread, so the
output is byte-for-byte deterministic. See scripts/ref/README.md.
"""

import argparse
import hashlib
import json
import os
import shutil

import torch
import transformers
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

VOCAB = 128
IMAGE, VIDEO, V_START, V_END, BOS = 120, 121, 122, 123, 124
TEXT_MAX = 112  # random text ids are drawn from [0, 112)
N_GEN = 4
INIT_STD = 0.08
PATCH = 8  # patch_dim = 3 * 2 * 8 * 8 = 384

TEXT = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=32,
    intermediate_size=32,
    rms_norm_eps=1e-6,
    rope_theta=10000.0,
    rope_scaling={"rope_type": "default", "mrope_section": [6, 5, 5], "mrope_interleaved": True},
    max_position_embeddings=4096,
    hidden_act="silu",
    tie_word_embeddings=False,  # tied random models tend to greedily repeat one token
    bos_token_id=BOS,
)
VISION = dict(
    depth=2,
    hidden_size=8,
    num_heads=1,
    intermediate_size=32,
    out_hidden_size=64,
    patch_size=PATCH,
    temporal_patch_size=2,
    spatial_merge_size=2,
    in_channels=3,
    num_position_embeddings=64,
    hidden_act="gelu_pytorch_tanh",
    deepstack_visual_indexes=[0, 1],
)
TOP = dict(tie_word_embeddings=False, image_token_id=IMAGE, video_token_id=VIDEO, vision_start_token_id=V_START, vision_end_token_id=V_END)

# name: (moe?, seed, text overrides, vision overrides, top-level overrides, keys dropped from the
#        saved text_config, cases, what it exercises)
MODELS = {
    "rope_odd": (
        False, 2001,
        dict(num_hidden_layers=1, rope_scaling={
            "rope_type": "linear", "factor": 2.0, "mrope_section": [10, 2, 10], "mrope_interleaved": False}),
        {}, {}, [], ["text", "image", "video"],
        "mrope_section [10,2,10]: 3*10 > head_dim/2 = 16 (clipped), sum 22 != 16, section[0] unused; "
        "mrope_interleaved false (ignored: always interleaved); rope_type linear, factor 2",
    ),
    "rope_yarn": (
        False, 2006,
        dict(num_hidden_layers=1, max_position_embeddings=2048, rope_scaling={
            "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 512,
            "beta_fast": 16, "mscale": 0.707, "mscale_all_dim": 1.0, "mrope_section": [6, 5, 5]}),
        {}, {}, [], ["text", "image"],
        "rope_type yarn (factor 4, original 512 positions, beta_fast 16): blended frequencies, cos/sin "
        "scaled by mscale(4, 0.707) / mscale(4, 1)",
    ),
    "rope_llama3": (
        False, 2007,
        dict(num_hidden_layers=1, rope_theta=10000.0, rope_scaling={
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64, "mrope_section": [6, 5, 5]}),
        {}, {}, [], ["text", "image"],
        "rope_type llama3 (factor 8, low 1, high 4, original 64 positions with theta 1e4, so low, medium "
        "and high frequency bands all occur)",
    ),
    "text_act": (
        False, 2008, dict(num_hidden_layers=1, hidden_act="gelu_pytorch_tanh"), {}, {}, [], ["text"],
        "text_config.hidden_act gelu_pytorch_tanh (the dense MLP's GLU activation)",
    ),
    "moe_act": (
        True, 2009,
        dict(num_hidden_layers=1, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
             hidden_act="gelu"),
        {}, {}, [], ["text"],
        "MoE text_config.hidden_act gelu (erf; the experts' GLU activation)",
    ),
    "vision_odd": (
        False, 2002, {},
        dict(depth=3, deepstack_visual_indexes=[2, 0, 9, 0, 1], num_position_embeddings=70, hidden_act="gelu"),
        {}, [], ["image", "video"],
        "deepstack_visual_indexes [2,0,9,0,1]: unsorted, 9 >= depth, duplicate 0 (taps: block 0 -> merger 1, "
        "1 -> 4, 2 -> 0, in block order), 3 levels > 2 decoder layers; num_position_embeddings 70 (not a "
        "square: 8x8 grid used); vision hidden_act gelu (erf)",
    ),
    "defaults": (
        False, 2003,
        dict(num_hidden_layers=1, num_attention_heads=1, rope_scaling={"rope_type": "default"}),
        {}, dict(tie_word_embeddings=True), ["head_dim", "tie_word_embeddings"], ["text", "image"],
        "no head_dim (dense class default 128, not hidden/heads = 64); rope_scaling without mrope_section "
        "([24,20,20], 3*24 > 64 clipped); top-level tie_word_embeddings true but text_config silent "
        "(transformers does not tie: lm_head.weight is used)",
    ),
    "moe_odd": (
        True, 2004,
        dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, norm_topk_prob=False,
             decoder_sparse_step=2, mlp_only_layers=[7]),
        {}, {}, ["head_dim"], ["text", "image"],
        "MoE: decoder_sparse_step 2 (layer 0 dense, layer 1 sparse), mlp_only_layers [7] beyond the depth, "
        "norm_topk_prob false (ignored: top-k weights always renormalised), no head_dim (hidden/heads = 32)",
    ),
    "vision_defect": (
        False, 2005, dict(num_hidden_layers=1, tie_word_embeddings=True),
        dict(depth=1, hidden_size=20, num_heads=2, deepstack_visual_indexes=[], out_hidden_size=48),
        dict(tie_word_embeddings=True), [], ["text"],
        "vision head dim 10 (not a multiple of 4) and out_hidden_size 48 != hidden 64: transformers builds "
        "it and runs text, but every image/video forward raises",
    ),
}


def make_model(name):
    moe, seed, t_over, v_over, top_over, _, _, _ = MODELS[name]
    text = dict(TEXT, **t_over)
    if moe and "head_dim" not in t_over:
        text.pop("head_dim")
    if name == "defaults":
        text.pop("head_dim")
    cfg_cls, model_cls = (Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration) if moe else (
        Qwen3VLConfig, Qwen3VLForConditionalGeneration)
    config = cfg_cls(text_config=text, vision_config=dict(VISION, **v_over), **dict(TOP, **top_over))
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    g = torch.Generator().manual_seed(seed)
    norms = {id(m.weight) for m in model.modules()
             if isinstance(m, nn.LayerNorm) or type(m).__name__.endswith("RMSNorm")}
    with torch.no_grad():
        for _, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32) * INIT_STD
            p.copy_(1.0 + noise if id(p) in norms else noise)
    return model_cls, model.to(torch.bfloat16)


def save_checkpoint(name, model, out_dir):
    drop = MODELS[name][5]
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True, max_shard_size="50MB")
    cpath = os.path.join(out_dir, "config.json")
    with open(cpath) as f:
        cfg = json.load(f)
    for k in drop:  # save_pretrained may already leave out values equal to class defaults
        cfg["text_config"].pop(k, None)
    with open(cpath, "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    gpath = os.path.join(out_dir, "generation_config.json")
    if os.path.exists(gpath):
        os.remove(gpath)
    return cfg


def build_cases():
    g = torch.Generator().manual_seed(4242)

    def text(n):
        return torch.randint(0, TEXT_MAX, (n,), generator=g).tolist()

    def vis(pad, gh, gw):
        return [V_START] + [pad] * (gh * gw // 4) + [V_END]

    def pixels(grids):
        n = sum(t * h * w for t, h, w in grids)
        return torch.rand((n, 3 * 2 * PATCH * PATCH), generator=g, dtype=torch.float32) * 2.0 - 1.0

    cases = {"text": dict(ids=text(16))}
    gi = (1, 4, 4)
    cases["image"] = dict(ids=text(4) + vis(IMAGE, 4, 4) + text(8), pixel_values=pixels([gi]), image_grid_thw=[gi])
    gv = (2, 4, 4)
    vid = []
    for _ in range(gv[0]):
        vid += text(2) + vis(VIDEO, 4, 4)
    cases["video"] = dict(ids=text(3) + vid + text(6), pixel_values_videos=pixels([gv]), video_grid_thw=[gv])
    return cases


def model_inputs(case, ids=None):
    ids = case["ids"] if ids is None else ids
    kw = dict(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.int64))
    for k in ("pixel_values", "pixel_values_videos"):
        if k in case:
            kw[k] = case[k].clone()
    for k in ("image_grid_thw", "video_grid_thw"):
        if k in case:
            kw[k] = torch.tensor(case[k], dtype=torch.int64)
    return kw


@torch.no_grad()
def run_case(model, case):
    kw = model_inputs(case)
    pos, delta = model.model.get_rope_index(
        kw["input_ids"], kw.get("image_grid_thw"), kw.get("video_grid_thw"), kw["attention_mask"])
    model.model.rope_deltas = None
    logits = model(**kw, use_cache=False).logits[0].float().contiguous()
    model.model.rope_deltas = None
    gen = model.generate(**model_inputs(case), do_sample=False, max_new_tokens=N_GEN, min_new_tokens=0)
    new = gen[0, len(case["ids"]):]
    assert new.numel() == N_GEN, new
    return {
        "logits": logits,
        "position_ids": pos[:, 0, :].to(torch.int64).contiguous(),
        "rope_delta": delta.reshape(1).to(torch.int64),
        "generated": new.to(torch.int64).contiguous(),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "configs"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if os.path.isdir(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out)
    cases = build_cases()
    manifest = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__},
                "models": {}, "files": []}
    for name, spec in MODELS.items():
        model_cls, model = make_model(name)
        mdir = os.path.join(args.out, name)
        cfg = save_checkpoint(name, model, mdir)
        ref = model_cls.from_pretrained(mdir, dtype=torch.float32, attn_implementation="eager").eval()
        ref.generation_config = GenerationConfig(bos_token_id=BOS, pad_token_id=BOS)
        # The saved config must still carry the oddity (save_pretrained must not normalise it away).
        tc = cfg["text_config"]
        for k in spec[5]:
            assert k not in tc, (name, k)
        if name == "defaults":
            assert ref.config.text_config.head_dim == 128 and not ref.config.text_config.tie_word_embeddings
            assert cfg["tie_word_embeddings"] is True
            assert ref.lm_head.weight.data_ptr() != ref.model.language_model.embed_tokens.weight.data_ptr()
        if name == "moe_odd":
            kinds = [type(l.mlp).__name__ for l in ref.model.language_model.layers]
            assert kinds == ["Qwen3VLMoeTextMLP", "Qwen3VLMoeTextSparseMoeBlock"], kinds
            assert ref.config.text_config.head_dim == 32
        manifest["models"][name] = {"exercises": spec[7], "cases": spec[6]}
        for cname in spec[6]:
            case = cases[cname]
            res = run_case(ref, case)
            out = {"input_ids": torch.tensor(case["ids"], dtype=torch.int64)}
            for k in ("pixel_values", "pixel_values_videos"):
                if k in case:
                    out[k] = case[k].contiguous()
            for k in ("image_grid_thw", "video_grid_thw"):
                if k in case:
                    out[k] = torch.tensor(case[k], dtype=torch.int64)
            out.update(res)
            fn = f"{name}__{cname}.safetensors"
            path = os.path.join(args.out, fn)
            # one metadata key: safetensors writes metadata maps in hash order
            save_file(out, path, metadata={"fixture": json.dumps(
                {"model": name, "case": cname, "torch": torch.__version__,
                 "transformers": transformers.__version__}, sort_keys=True)})
            with open(path, "rb") as f:
                sha = hashlib.sha256(f.read()).hexdigest()
            manifest["files"].append({"file": fn, "bytes": os.path.getsize(path), "sha256": sha})
            print(f"{name}/{cname}: seq {len(case['ids'])}, logits std {float(res['logits'].std()):.3f}, "
                  f"generated {res['generated'].tolist()}")
        if name == "vision_defect":
            try:
                run_case(ref, cases["image"])
            except Exception as e:  # noqa: BLE001 - any failure is what we document
                manifest["models"][name]["image_forward_error"] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
            else:
                raise AssertionError("vision_defect: transformers ran an image forward")
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
