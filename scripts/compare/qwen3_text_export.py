#!/usr/bin/env python3
"""Write the text decoder of a Qwen3-VL checkpoint as a plain Qwen3ForCausalLM folder (stdlib only).

llama.cpp's convert_hf_to_gguf.py knows Qwen3 dense; the Qwen3-VL text decoder is the same network
(q/k norms, GQA, SwiGLU). With text-only positions all three M-RoPE sections carry the same index,
so interleaved M-RoPE is plain RoPE, and a Qwen3 GGUF is an exact speed stand-in for our text path.

Tensors `model.language_model.X` become `model.X`; `lm_head.weight` is kept when present; vision
tensors are dropped. The safetensors file is written by streaming byte ranges (no torch, low memory).
"""

import argparse
import glob
import json
import os
import shutil
import struct


def read_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n)), 8 + n


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="Qwen3-VL checkpoint dir")
    p.add_argument("--tokenizer-dir", required=True, help="dir with tokenizer.json + tokenizer_config.json")
    p.add_argument("--out", required=True)
    a = p.parse_args()

    with open(os.path.join(a.model, "config.json")) as f:
        cfg = json.load(f)
    tc = cfg["text_config"]
    tied = cfg.get("tie_word_embeddings", tc.get("tie_word_embeddings", False))
    rope_theta = tc.get("rope_theta", (tc.get("rope_parameters") or {}).get("rope_theta", 5e6))
    qwen3 = {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_size": tc["hidden_size"],
        "intermediate_size": tc["intermediate_size"],
        "num_hidden_layers": tc["num_hidden_layers"],
        "num_attention_heads": tc["num_attention_heads"],
        "num_key_value_heads": tc["num_key_value_heads"],
        "head_dim": tc["head_dim"],
        "hidden_act": tc.get("hidden_act", "silu"),
        "max_position_embeddings": tc.get("max_position_embeddings", 262144),
        "rms_norm_eps": tc["rms_norm_eps"],
        "rope_theta": rope_theta,
        "rope_scaling": None,
        "attention_bias": tc.get("attention_bias", False),
        "vocab_size": tc["vocab_size"],
        "tie_word_embeddings": tied,
        "bos_token_id": tc.get("bos_token_id", 151643),
        "eos_token_id": tc.get("eos_token_id", 151645),
        "torch_dtype": "bfloat16",
    }

    # Collect (new name, source file, absolute byte range, header entry) for the text tensors.
    picked = []
    for src in sorted(glob.glob(os.path.join(a.model, "*.safetensors"))):
        header, base = read_header(src)
        for name, t in header.items():
            if name == "__metadata__":
                continue
            if name.startswith("model.language_model."):
                new = "model." + name[len("model.language_model."):]
            elif name == "lm_head.weight" and not tied:
                new = name
            else:
                continue
            lo, hi = t["data_offsets"]
            picked.append((new, src, base + lo, hi - lo, t["dtype"], t["shape"]))
    if not picked:
        raise SystemExit(f"no model.language_model.* tensors in {a.model}")
    picked.sort()

    os.makedirs(a.out, exist_ok=True)
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for new, _, _, size, dtype, shape in picked:
        header[new] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + size]}
        off += size
    hbytes = json.dumps(header, separators=(",", ":")).encode()
    hbytes += b" " * (-len(hbytes) % 8)
    tmp = os.path.join(a.out, "model.safetensors.tmp")
    with open(tmp, "wb") as out:
        out.write(struct.pack("<Q", len(hbytes)))
        out.write(hbytes)
        handles = {}
        for _, src, start, size, _, _ in picked:
            f = handles.setdefault(src, open(src, "rb"))
            f.seek(start)
            left = size
            while left:
                chunk = f.read(min(left, 64 << 20))
                out.write(chunk)
                left -= len(chunk)
        for f in handles.values():
            f.close()
    os.replace(tmp, os.path.join(a.out, "model.safetensors"))
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(qwen3, f, indent=2)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(a.tokenizer_dir, name), os.path.join(a.out, name))
    print(f"wrote {a.out}: {len(picked)} tensors, {off / 1e9:.2f} GB, tied={tied}")


if __name__ == "__main__":
    main()
