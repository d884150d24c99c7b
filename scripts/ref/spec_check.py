#!/usr/bin/env python3
"""Independent float32 re-implementation of Qwen3-VL written from /work/shared/spec/qwen3vl-model.md
(sections 1-4), using only torch tensor ops (no transformers). It loads the committed tiny checkpoints
from their safetensors files and compares against the committed *__f32 fixtures produced by
gen_model_fixtures.py (HF transformers). Validates that the spec's formulas reproduce HF.

Usage: python scripts/ref/spec_check.py   (exit code 1 on mismatch)
"""

import glob
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(REPO, "tests", "fixtures")


def load_weights(mdir):
    idx = os.path.join(mdir, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else ["model.safetensors"]
    w = {}
    for f in files:
        for k, v in load_file(os.path.join(mdir, f)).items():
            w[k] = v.float()
    return w


def layer_norm(x, w, b, eps=1e-6):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def rms_norm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def gelu_erf(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], -1)


def merge_order(t, gh, gw):
    """(t, row, col) of every patch in merge-window order (spec 2.3 step 5 / 6.5)."""
    out = []
    for ti in range(t):
        for br in range(gh // 2):
            for bc in range(gw // 2):
                for ir in range(2):
                    for ic in range(2):
                        out.append((ti, br * 2 + ir, bc * 2 + ic))
    return out


def vision(w, vc, pixels, grids):
    p = "model.visual."
    Hv, nh = vc["hidden_size"], vc["num_heads"]
    Dv = Hv // nh
    S = int(math.isqrt(vc["num_position_embeddings"]))
    # 2.2 patch embed as a linear map
    x = pixels @ w[p + "patch_embed.proj.weight"].reshape(Hv, -1).T + w[p + "patch_embed.proj.bias"]
    # 2.3 pos embed bilinear interpolation + 2.4 rotary angles + segments
    table = w[p + "pos_embed.weight"]
    pos_rows, angles, segs = [], [], []
    nfreq = Dv // 4
    f = torch.tensor([10000.0 ** (-4 * k / Dv) for k in range(nfreq)], dtype=torch.float32)
    for t, gh, gw in grids:
        hi = torch.linspace(0, S - 1, gh)
        wi = torch.linspace(0, S - 1, gw)
        grid = torch.zeros(gh, gw, Hv)
        for r in range(gh):
            for c in range(gw):
                fh, fw = int(hi[r]), int(wi[c])
                ch, cw = min(fh + 1, S - 1), min(fw + 1, S - 1)
                dh, dw = float(hi[r] - fh), float(wi[c] - fw)
                grid[r, c] = (
                    (1 - dh) * (1 - dw) * table[fh * S + fw]
                    + (1 - dh) * dw * table[fh * S + cw]
                    + dh * (1 - dw) * table[ch * S + fw]
                    + dh * dw * table[ch * S + cw]
                )
        for ti, r, c in merge_order(t, gh, gw):
            pos_rows.append(grid[r, c])
            a = torch.cat([r * f, c * f])
            angles.append(torch.cat([a, a]))
        segs += [gh * gw] * t
    x = x + torch.stack(pos_rows)
    ang = torch.stack(angles)
    cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]
    ds_idx = vc["deepstack_visual_indexes"]
    ds = []

    def merger(h, pre, post):
        if not post:
            h = layer_norm(h, w[pre + "norm.weight"], w[pre + "norm.bias"])
        h = h.reshape(-1, 4 * Hv)
        if post:
            h = layer_norm(h, w[pre + "norm.weight"], w[pre + "norm.bias"])
        h = gelu_erf(h @ w[pre + "linear_fc1.weight"].T + w[pre + "linear_fc1.bias"])
        return h @ w[pre + "linear_fc2.weight"].T + w[pre + "linear_fc2.bias"]

    for i in range(vc["depth"]):
        b = f"{p}blocks.{i}."
        h = layer_norm(x, w[b + "norm1.weight"], w[b + "norm1.bias"])
        qkv = (h @ w[b + "attn.qkv.weight"].T + w[b + "attn.qkv.bias"]).reshape(-1, 3, nh, Dv)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        outs, o = [], 0
        for L in segs:
            qs, ks, vs = (z[o : o + L].transpose(0, 1) for z in (q, k, v))
            a = torch.softmax(qs @ ks.transpose(1, 2) / math.sqrt(Dv), -1)
            outs.append((a @ vs).transpose(0, 1).reshape(L, Hv))
            o += L
        x = x + (torch.cat(outs) @ w[b + "attn.proj.weight"].T + w[b + "attn.proj.bias"])
        h = layer_norm(x, w[b + "norm2.weight"], w[b + "norm2.bias"])
        h = gelu_tanh(h @ w[b + "mlp.linear_fc1.weight"].T + w[b + "mlp.linear_fc1.bias"])
        x = x + (h @ w[b + "mlp.linear_fc2.weight"].T + w[b + "mlp.linear_fc2.bias"])
        if i in ds_idx:
            ds.append(merger(x, f"{p}deepstack_merger_list.{ds_idx.index(i)}.", True))
    return merger(x, p + "merger.", False), ds


def rope_index(ids, images, videos, cfg):
    """spec 4.4"""
    img_q = list(images)
    vid_q = [(1, h, w) for t, h, w in videos for _ in range(t)]
    pos, s, i = [], 0, 0
    while i < len(ids):
        if ids[i] in (cfg["image_token_id"], cfg["video_token_id"]):
            t, h, w = img_q.pop(0) if ids[i] == cfg["image_token_id"] else vid_q.pop(0)
            hh, ww = h // 2, w // 2
            pos += [(s + ti, s + r, s + c) for ti in range(t) for r in range(hh) for c in range(ww)]
            i += t * hh * ww
            s += max(t - 1, hh - 1, ww - 1) + 1
        else:
            pos.append((s, s, s))
            s += 1
            i += 1
    p = torch.tensor(pos).T
    return p, int(p.max()) + 1 - len(ids)


def text_forward(w, cfg, ids, pos, emb_override, vis_mask, ds):
    tc = cfg["text_config"]
    lm = "model.language_model."
    H, nH, nKV, hd = tc["hidden_size"], tc["num_attention_heads"], tc["num_key_value_heads"], tc["head_dim"]
    eps = tc["rms_norm_eps"]
    x = w[lm + "embed_tokens.weight"][torch.tensor(ids)]
    if emb_override is not None:
        x[vis_mask] = emb_override
    # 4.1-4.3 interleaved M-RoPE
    inv = 1.0 / (tc["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    sec = tc["rope_scaling"]["mrope_section"]
    ang = pos.float()[:, :, None] * inv[None, None, :]  # [3, seq, hd/2]
    a = ang[0].clone()
    for j in range(hd // 2):
        if j % 3 == 1 and j < 3 * sec[1]:
            a[:, j] = ang[1, :, j]
        elif j % 3 == 2 and j < 3 * sec[2]:
            a[:, j] = ang[2, :, j]
    emb = torch.cat([a, a], -1)
    cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
    seq = len(ids)
    mask = torch.full((seq, seq), float("-inf")).triu(1)
    hs = [x.clone()]
    for l in range(tc["num_hidden_layers"]):
        b = f"{lm}layers.{l}."
        h = rms_norm(x, w[b + "input_layernorm.weight"], eps)
        q = rms_norm((h @ w[b + "self_attn.q_proj.weight"].T).reshape(seq, nH, hd), w[b + "self_attn.q_norm.weight"], eps)
        k = rms_norm((h @ w[b + "self_attn.k_proj.weight"].T).reshape(seq, nKV, hd), w[b + "self_attn.k_norm.weight"], eps)
        v = (h @ w[b + "self_attn.v_proj.weight"].T).reshape(seq, nKV, hd)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = nH // nKV
        k = k.repeat_interleave(rep, 1)
        v = v.repeat_interleave(rep, 1)
        att = torch.softmax(q.transpose(0, 1) @ k.permute(1, 2, 0) / math.sqrt(hd) + mask, -1)
        o = (att @ v.transpose(0, 1)).transpose(0, 1).reshape(seq, nH * hd)
        x = x + o @ w[b + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[b + "post_attention_layernorm.weight"], eps)
        if b + "mlp.gate.weight" in w:
            p = torch.softmax(h @ w[b + "mlp.gate.weight"].T, -1)
            vals, idx = torch.topk(p, tc["num_experts_per_tok"], -1)
            vals = vals / vals.sum(-1, keepdim=True)
            Im = tc["moe_intermediate_size"]
            out = torch.zeros_like(h)
            for t in range(seq):
                for j in range(idx.shape[1]):
                    e = int(idx[t, j])
                    gu = h[t] @ w[b + "mlp.experts.gate_up_proj"][e]
                    y = (F.silu(gu[:Im]) * gu[Im:]) @ w[b + "mlp.experts.down_proj"][e]
                    out[t] += vals[t, j] * y
            x = x + out
        else:
            g = h @ w[b + "mlp.gate_proj.weight"].T
            u = h @ w[b + "mlp.up_proj.weight"].T
            x = x + (F.silu(g) * u) @ w[b + "mlp.down_proj.weight"].T
        if ds is not None and l < len(ds):
            x[vis_mask] = x[vis_mask] + ds[l]
        hs.append(x.clone())
    x = rms_norm(x, w[lm + "norm.weight"], eps)
    head = w["lm_head.weight"] if "lm_head.weight" in w else w[lm + "embed_tokens.weight"]
    return x @ head.T, torch.stack(hs)


def check(model, case, w, cfg):
    fx = load_file(os.path.join(FIX, "cases", f"{model}__{case}__f32.safetensors"))
    ids = fx["input_ids"].tolist()
    vc = cfg["vision_config"]
    images = fx["image_grid_thw"].tolist() if "image_grid_thw" in fx else []
    videos = fx["video_grid_thw"].tolist() if "video_grid_thw" in fx else []
    ids_t = torch.tensor(ids)
    img_mask = ids_t == cfg["image_token_id"]
    vid_mask = ids_t == cfg["video_token_id"]
    vis_mask = img_mask | vid_mask
    errs = {}
    override, ds = None, None
    if images or videos:
        override = torch.zeros(int(vis_mask.sum()), cfg["text_config"]["hidden_size"])
        ds = [torch.zeros_like(override) for _ in vc["deepstack_visual_indexes"]]
        sub_img, sub_vid = img_mask[vis_mask], vid_mask[vis_mask]
        for grids, key, sub, ekey in (
            (images, "pixel_values", sub_img, "image_embeds"),
            (videos, "pixel_values_videos", sub_vid, "video_embeds"),
        ):
            if grids:
                emb, dsk = vision(w, vc, fx[key], grids)
                errs[ekey] = float((emb - fx[ekey]).abs().max())
                override[sub] = emb
                for k in range(len(ds)):
                    ds[k][sub] = dsk[k]
        for k in range(len(ds)):
            errs[f"deepstack_{k}"] = float((ds[k] - fx[f"deepstack_{k}"]).abs().max())
    pos, delta = rope_index(ids, images, videos, cfg)
    assert torch.equal(pos, fx["position_ids"]) and delta == int(fx["rope_delta"])
    logits, hs = text_forward(w, cfg, ids, pos, override, vis_mask, ds)
    errs["hidden_states"] = float((hs - fx["hidden_states"]).abs().max())
    errs["logits"] = float((logits - fx["logits"]).abs().max())
    return errs


def main():
    torch.set_num_threads(1)
    ok = True
    manifest = json.load(open(os.path.join(FIX, "cases", "manifest.json")))
    for model in manifest["models"]:
        mdir = os.path.join(FIX, "models", model)
        w = load_weights(mdir)
        cfg = json.load(open(os.path.join(mdir, "config.json")))
        for case in manifest["cases"]:
            errs = check(model, case, w, cfg)
            worst = max(errs.values())
            ok &= worst < 2e-4
            print(f"{model:12s} {case:7s} max|spec-HF| " + " ".join(f"{k}={v:.2e}" for k, v in errs.items()))
    print("OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
