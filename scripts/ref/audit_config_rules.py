#!/usr/bin/env python3
"""What transformers does with configs that break each rule of our config validation.

For every row of the table in docs/config-audit.md this builds the config with transformers,
constructs the model and runs a text forward and an image forward, and checks the outcome
against the one recorded here (exit 1 on any difference). Outcomes:
  ok         builds, text and image forwards run
  no-vision  builds and runs text, but the image forward raises
  no-text    builds, but the text forward raises
  no-build   constructing the config or the model raises
Tiny sizes, CPU, 1 thread, ~20 s. See scripts/ref/README.md.
"""

import sys

import torch
from transformers import (
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLMoeConfig,
    Qwen3VLMoeForConditionalGeneration,
)

T = dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
         head_dim=32, intermediate_size=96, tie_word_embeddings=False,
         rope_scaling={"rope_type": "default", "mrope_section": [6, 5, 5], "mrope_interleaved": True})
V = dict(depth=2, hidden_size=32, num_heads=2, intermediate_size=48, out_hidden_size=64, deepstack_visual_indexes=[0, 1])
TOP = dict(image_token_id=500, video_token_id=501, vision_start_token_id=502, vision_end_token_id=503)
MOE = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32)
DEL = object()


def rs(**kw):
    return {"rope_type": "default", **kw}


# (rule broken, text overrides, vision overrides, moe?, expected outcome)
ROWS = [
    ("baseline", {}, {}, False, "ok"),
    ("mrope_section 3*s > head_dim/2 ([2,10,10], head_dim 32)", dict(rope_scaling=rs(mrope_section=[2, 10, 10])), {}, False, "ok"),
    ("mrope_section sum < head_dim/2 ([1,1,1])", dict(rope_scaling=rs(mrope_section=[1, 1, 1])), {}, False, "ok"),
    ("mrope_section sum > head_dim/2 ([20,20,20])", dict(rope_scaling=rs(mrope_section=[20, 20, 20])), {}, False, "ok"),
    ("mrope_section with 4 entries", dict(rope_scaling=rs(mrope_section=[4, 4, 4, 4])), {}, False, "ok"),
    ("mrope_section with 2 entries", dict(rope_scaling=rs(mrope_section=[8, 8])), {}, False, "no-text"),
    ("rope_scaling without mrope_section", dict(rope_scaling=rs()), {}, False, "ok"),
    ("rope_scaling absent", dict(rope_scaling=DEL), {}, False, "no-build"),
    ("mrope_interleaved false", dict(rope_scaling=rs(mrope_section=[6, 5, 5], mrope_interleaved=False)), {}, False, "ok"),
    ("rope_type linear", dict(rope_scaling=rs(rope_type="linear", factor=2.0, mrope_section=[6, 5, 5])), {}, False, "ok"),
    ("rope_type yarn", dict(rope_scaling=rs(rope_type="yarn", factor=2.0, mrope_section=[6, 5, 5])), {}, False, "ok"),
    ("head_dim absent (dense)", dict(head_dim=DEL), {}, False, "ok"),
    ("head_dim odd (15)", dict(head_dim=15, rope_scaling=rs(mrope_section=[3, 2, 2])), {}, False, "no-text"),
    ("head_dim 0", dict(head_dim=0), {}, False, "no-build"),
    ("head_dim/2 odd (30)", dict(head_dim=30, rope_scaling=rs(mrope_section=[5, 5, 5])), {}, False, "ok"),
    ("num_key_value_heads does not divide heads (4/3)", dict(num_key_value_heads=3), {}, False, "no-text"),
    ("num_key_value_heads > heads (4/8)", dict(num_key_value_heads=8), {}, False, "no-text"),
    ("num_attention_heads 0", dict(num_attention_heads=0), {}, False, "no-build"),
    ("num_key_value_heads 0", dict(num_key_value_heads=0), {}, False, "no-build"),
    ("vocab_size 0", dict(vocab_size=0), {}, False, "no-text"),
    ("text hidden_act gelu", dict(hidden_act="gelu"), {}, False, "ok"),
    ("vision head dim not a multiple of 4 (36/2)", {}, dict(hidden_size=36), False, "no-vision"),
    ("vision hidden_size not a multiple of num_heads (33/2)", {}, dict(hidden_size=33), False, "no-vision"),
    ("vision num_heads 0", {}, dict(num_heads=0), False, "no-build"),
    ("vision hidden_size 0", {}, dict(hidden_size=0), False, "no-build"),
    ("vision patch_size 0", {}, dict(patch_size=0), False, "no-vision"),
    ("vision spatial_merge_size 0", {}, dict(spatial_merge_size=0), False, "no-vision"),
    ("vision temporal_patch_size 0", {}, dict(temporal_patch_size=0), False, "no-vision"),
    ("vision num_position_embeddings not a square (2000)", {}, dict(num_position_embeddings=2000), False, "ok"),
    ("deepstack index >= depth ([0,5])", {}, dict(deepstack_visual_indexes=[0, 5]), False, "ok"),
    ("deepstack indexes unsorted ([1,0])", {}, dict(deepstack_visual_indexes=[1, 0]), False, "ok"),
    ("deepstack indexes duplicated ([1,1])", {}, dict(deepstack_visual_indexes=[1, 1]), False, "ok"),
    ("more deepstack levels than decoder layers", {}, dict(depth=3, deepstack_visual_indexes=[0, 1, 2]), False, "ok"),
    ("vision out_hidden_size != text hidden_size", {}, dict(out_hidden_size=48), False, "no-vision"),
    ("vision hidden_act gelu", {}, dict(hidden_act="gelu"), False, "ok"),
    ("moe baseline", MOE, {}, True, "ok"),
    ("moe num_experts_per_tok > num_experts", dict(MOE, num_experts_per_tok=5), {}, True, "no-text"),
    ("moe num_experts 0 (dense layers)", dict(MOE, num_experts=0), {}, True, "ok"),
    ("moe decoder_sparse_step 0", dict(MOE, decoder_sparse_step=0), {}, True, "no-build"),
    ("moe decoder_sparse_step 2", dict(MOE, decoder_sparse_step=2), {}, True, "ok"),
    ("moe mlp_only_layers beyond depth", dict(MOE, mlp_only_layers=[5]), {}, True, "ok"),
    ("moe norm_topk_prob false", dict(MOE, norm_topk_prob=False), {}, True, "ok"),
    # degenerate but accepted by transformers: the sparse MLP then adds exactly 0
    ("moe num_experts_per_tok 0", dict(MOE, num_experts_per_tok=0), {}, True, "ok"),
    ("moe moe_intermediate_size 0", dict(MOE, moe_intermediate_size=0), {}, True, "ok"),
    # degenerate: no hidden state at all (logits are all 0); images then fail the feature check
    ("text hidden_size 0", dict(hidden_size=0), {}, False, "no-vision"),
]


def outcome(t_over, v_over, moe):
    t = {k: v for k, v in {**T, **t_over}.items() if v is not DEL}
    v = {**V, **v_over}
    cc, mc = (Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration) if moe else (
        Qwen3VLConfig, Qwen3VLForConditionalGeneration)
    try:
        cfg = cc(text_config=t, vision_config=v, **TOP)
        torch.manual_seed(0)
        m = mc(cfg).eval()
    except Exception as e:  # noqa: BLE001
        return "no-build", e
    try:
        with torch.no_grad():
            m(input_ids=torch.tensor([[1, 2, 3, 4, 5]]))
    except Exception as e:  # noqa: BLE001
        return "no-text", e
    vc = cfg.vision_config
    ms = vc.spatial_merge_size
    try:
        grid = torch.tensor([[1, 2 * ms, 2 * ms]])
        px = torch.rand(4 * ms * ms, vc.in_channels * vc.temporal_patch_size * vc.patch_size ** 2)
        with torch.no_grad():
            m(input_ids=torch.tensor([[1, 502] + [500] * 4 + [503, 7]]), pixel_values=px, image_grid_thw=grid)
    except Exception as e:  # noqa: BLE001
        return "no-vision", e
    return "ok", None


def main():
    torch.set_num_threads(1)
    bad = 0
    for name, t_over, v_over, moe, want in ROWS:
        got, err = outcome(t_over, v_over, moe)
        why = "" if err is None else f"  [{type(err).__name__}: {str(err).splitlines()[0][:90]}]"
        mark = "ok " if got == want else "MISMATCH"
        bad += got != want
        print(f"{mark} {name:55s} {got:10s}{why}", flush=True)
    if bad:
        print(f"{bad} outcome(s) differ from the table", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
