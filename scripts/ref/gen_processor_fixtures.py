#!/usr/bin/env python3
"""Generates the Hugging Face processor fixtures used by tests/preprocess_*.rs and tests/prompt_*.rs.

Run with the pinned reference env (transformers 4.57.x, slow PIL image processor):
    ~/.cache/qwen3vl-ref/bin/python scripts/ref/gen_processor_fixtures.py [--tokenizer-dir ~/.cache/qwen3vl]

Inputs are generated deterministically (numpy seeds) and written to tests/fixtures/processor/inputs/;
videos are encoded with the ffmpeg CLI (test-data creation only) and decoded back to RGB with it,
the same libswscale path the Rust decoder uses. The processor is built in code, without any hub
access. Outputs: cases.json (messages, configs, rendered prompts) and one safetensors per case with
input_ids, grids and the pixel rows quantised back to uint8 (exact: every value is (q - 127.5)/127.5
in the processors' float formulas), subsampled for large items to keep fixtures small.
"""
import argparse
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from safetensors.numpy import save_file

from transformers import Qwen2TokenizerFast, Qwen2VLImageProcessor
from transformers.models.qwen3_vl import Qwen3VLProcessor, Qwen3VLVideoProcessor

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "processor"
INPUTS = OUT / "inputs"
TEMPLATE = (ROOT / "src" / "prompt" / "chat_template.jinja").read_text()
MAX_ROWS = 192  # rows kept per visual item when it has more

DEFAULT_PRE = {
    "size": {"longest_edge": 16777216, "shortest_edge": 65536},
    "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
}
DEFAULT_VIDEO = {
    "size": {"longest_edge": 25165824, "shortest_edge": 4096},
    "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
}
CONFIGS = {
    "default": {"preprocessor": DEFAULT_PRE, "video": DEFAULT_VIDEO},
    # Small budgets: exercises the downscale branches with small outputs. transformers 4.57's slow
    # Qwen2VLImageProcessor ignores `size` (its __init__ resets it to the class defaults 3136 /
    # 1003520) and only honours min_pixels / max_pixels, so the image budget is given that way.
    "small": {
        "preprocessor": {**DEFAULT_PRE, "min_pixels": 1024, "max_pixels": 200000},
        "video": {**DEFAULT_VIDEO, "size": {"longest_edge": 300000, "shortest_edge": 4096}},
    },
}


def smooth(h, w, seed, channels=3):
    """Smooth colour field plus mild noise: realistic for resampling, compresses well."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    out = []
    for c in range(channels):
        fx, fy, ph = rng.uniform(0.005, 0.08), rng.uniform(0.005, 0.08), rng.uniform(0, 6.28)
        v = 127.5 + 100 * np.sin(x * fx + ph) * np.cos(y * fy - ph) + rng.normal(0, 6, (h, w))
        # A few hard edges so the bicubic overshoot/clipping paths are hit.
        v[(x // 37 + y // 23) % 5 == 0] = 250 if c % 2 else 5
        out.append(v)
    return np.clip(np.stack(out, -1), 0, 255).round().astype(np.uint8)


def make_inputs():
    INPUTS.mkdir(parents=True, exist_ok=True)
    Image.fromarray(smooth(333, 517, 1)).save(INPUTS / "odd.png")
    rgba = np.concatenate([smooth(129, 257, 2), np.zeros((129, 257, 1), np.uint8)], -1)
    rgba[..., 3] = np.linspace(0, 255, 257).astype(np.uint8)[None, :]
    rgba[:20, :, 3] = 255
    Image.fromarray(rgba, "RGBA").save(INPUTS / "rgba.png")
    Image.fromarray(smooth(5, 7, 3)).save(INPUTS / "tiny.png")
    Image.fromarray(smooth(20, 3000, 4)).save(INPUTS / "extreme.png")
    Image.fromarray(smooth(1400, 2000, 5)).save(INPUTS / "large.jpg", quality=88)
    Image.fromarray(smooth(448, 448, 6)).save(INPUTS / "photo448.jpg", quality=85)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    Image.fromarray(smooth(120, 200, 7)).save(INPUTS / "exif6.jpg", quality=90, exif=exif)
    pal = Image.fromarray(smooth(48, 64, 8)).convert("P", palette=Image.ADAPTIVE, colors=64)
    pal.save(INPUTS / "palette.gif", transparency=0)
    Image.fromarray(smooth(90, 110, 9)[..., 0], "L").save(INPUTS / "gray.webp", lossless=True)
    Image.fromarray(smooth(70, 90, 10)).save(INPUTS / "photo.bmp")
    la = np.stack([smooth(60, 80, 11)[..., 0], np.tile(np.linspace(0, 255, 80).astype(np.uint8), (60, 1))], -1)
    Image.fromarray(la, "LA").save(INPUTS / "la.png")
    Image.fromarray(smooth(40, 70, 12)).save(INPUTS / "small40x70.png")
    make_video("clip.mp4", 48, 12, 120, 200, ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"])
    make_video("odd.webm", 15, 6, 64, 96, ["-c:v", "libvpx-vp9", "-b:v", "200k", "-pix_fmt", "yuv420p"])
    # Same h264 stream in other containers (decode tests), a faststart copy (truncation test) and
    # an MPEG-4 Part 2 AVI.
    for name, extra in [("clip.mkv", []), ("clip.mov", []), ("clip_faststart.mp4", ["-movflags", "+faststart"])]:
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(INPUTS / "clip.mp4"), "-c", "copy", *extra,
                        str(INPUTS / name)], check=True)
    make_video("clip.avi", 24, 8, 64, 80, ["-c:v", "mpeg4", "-q:v", "5", "-pix_fmt", "yuv420p"])


def make_video(name, frames, fps, h, w, codec):
    base = smooth(h + frames * 2, w + frames * 3, 20 + frames)
    data = b"".join(base[i * 2:i * 2 + h, i * 3:i * 3 + w].tobytes() for i in range(frames))
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
                    "-r", str(fps), "-i", "-", *codec, "-an", str(INPUTS / name)], input=data, check=True)


def decode_video(path):
    """(frames uint8 [T,H,W,3], fps) decoded with FFmpeg's libswscale like the Rust side."""
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height,avg_frame_rate",
         "-of", "json", str(path)], capture_output=True, check=True).stdout)["streams"][0]
    w, h = probe["width"], probe["height"]
    num, den = map(int, probe["avg_frame_rate"].split("/"))
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24",
                          "-sws_flags", "bilinear", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3), num / den


def load_image(path):
    """Our documented semantics: EXIF orientation applied, alpha composited on white."""
    img = ImageOps.exif_transpose(Image.open(path))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        bg = Image.new("RGB", img.size, (255, 255, 255))
        bg.paste(img, mask=img.split()[3])
        return bg
    return img.convert("RGB")


def build_processor(tok_dir, cfg):
    tok = Qwen2TokenizerFast.from_pretrained(str(tok_dir))
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(**cfg["preprocessor"]),
        tokenizer=tok,
        video_processor=Qwen3VLVideoProcessor(**cfg["video"]),
        chat_template=TEMPLATE,
    )


def part(kind, name):
    return {"type": f"{kind}_url", f"{kind}_url": {"url": f"file://inputs/{name}"}}


def text(t):
    return {"type": "text", "text": t}


MEDIA_CASES = [
    ("img_odd", "default", [{"role": "user", "content": [part("image", "odd.png"), text("Describe this image.")]}]),
    ("img_multi", "default", [
        {"role": "system", "content": "You are a careful assistant."},
        {"role": "user", "content": [text("Compare "), part("image", "rgba.png"), text(" and "), part("image", "tiny.png")]},
    ]),
    ("img_large_jpeg", "default", [{"role": "user", "content": [part("image", "large.jpg"), text("What is it?")]}]),
    ("img_jpeg448", "default", [{"role": "user", "content": [part("image", "photo448.jpg")]}]),
    ("img_extreme", "default", [{"role": "user", "content": [part("image", "extreme.png"), text("Read the strip.")]}]),
    ("img_formats", "small", [{"role": "user", "content": [
        part("image", "exif6.jpg"), part("image", "palette.gif"), part("image", "gray.webp"),
        part("image", "photo.bmp"), part("image", "la.png"), text("Five images.")]}]),
    ("img_downscale", "small", [{"role": "user", "content": [part("image", "large.jpg")]}]),
    ("img_floats", "small", [{"role": "user", "content": [part("image", "small40x70.png"), text("tiny")]}]),
    ("video_mp4", "default", [{"role": "user", "content": [part("video", "clip.mp4"), text("What happens?")]}]),
    ("video_webm_and_image", "small", [
        {"role": "user", "content": [text("First "), part("image", "odd.png"), text(" then "), part("video", "odd.webm")]},
        {"role": "assistant", "content": "A picture and a clip."},
        {"role": "user", "content": "Again, briefly."},
    ]),
]

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                                                   "unit": {"type": "string", "enum": ["c", "f"]}},
                   "required": ["city"]}}}

TEMPLATE_CASES = [
    ("plain", [{"role": "user", "content": "Hello!"}], None),
    ("system_multiturn", [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": [text("And now: "), text("two parts, ünïcödé 漢字 🙂")]},
    ], None),
    ("tools", [
        {"role": "system", "content": "Use tools when needed."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Lyon", "unit": "c"}}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"},
        {"role": "tool", "tool_call_id": "call_2", "content": "{\"temp\": 23}"},
    ], [WEATHER_TOOL]),
    ("tools_no_system", [{"role": "user", "content": "Weather in Rome?"}], [WEATHER_TOOL]),
    ("assistant_text_and_tool", [
        {"role": "user", "content": "Check Oslo."},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
        {"role": "tool", "content": "cold"},
        {"role": "user", "content": "Thanks"},
    ], [WEATHER_TOOL]),
    ("list_contents", [
        {"role": "system", "content": [text("Sys A. "), text("Sys B.")]},
        {"role": "user", "content": [text("Q1")]},
        {"role": "assistant", "content": [text("A1")]},
        {"role": "user", "content": "Q2"},
    ], None),
    ("vision_placeholders", [
        {"role": "user", "content": [part("image", "a.png"), text("x"), part("video", "b.mp4")]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [part("image", "c.png")]},
    ], None),
]


def hf_messages(messages):
    out = []
    for m in messages:
        m = copy.deepcopy(m)
        if isinstance(m.get("content"), list):
            m["content"] = [
                {"type": "image"} if p["type"] == "image_url" else
                {"type": "video"} if p["type"] == "video_url" else p for p in m["content"]]
        if m.get("content") is None:
            m["content"] = ""
        out.append(m)
    return out


def media_of(messages):
    items = []
    for m in messages:
        if isinstance(m.get("content"), list):
            for p in m["content"]:
                if p["type"] in ("image_url", "video_url"):
                    items.append((p["type"][:5], p[p["type"]]["url"].removeprefix("file://")))
    return items


def quantize(rows, kind):
    q = np.clip(np.round(rows.astype(np.float64) * 127.5 + 127.5), 0, 255).astype(np.uint8)
    if kind == "image":
        back = ((q.astype(np.float64) * (1 / 255)).astype(np.float32) - np.float32(0.5)) / np.float32(0.5)
    else:
        back = (q.astype(np.float32) - np.float32(127.5)) / np.float32(127.5)
    assert np.array_equal(back, rows), f"{kind} values are not exactly uint8-derived"
    return q


def store_rows(tensors, prefix, rows, kind, seed):
    n = rows.shape[0]
    idx = np.arange(n) if n <= MAX_ROWS else np.sort(np.random.default_rng(seed).choice(n, MAX_ROWS, replace=False))
    tensors[f"{prefix}_rows"] = idx.astype(np.int64)
    tensors[f"{prefix}_q"] = quantize(rows[idx], kind)
    tensors[f"{prefix}_mean"] = np.array([rows.astype(np.float64).mean()])


def run_media_case(procs, name, cfg, messages):
    proc = procs[cfg]
    prompt = proc.apply_chat_template(hf_messages(messages), add_generation_prompt=True, tokenize=False)
    images, videos, metas = [], [], []
    for kind, rel in media_of(messages):
        if kind == "image":
            images.append(load_image(OUT / rel))
        else:
            frames, fps = decode_video(OUT / rel)
            videos.append(frames)
            metas.append({"fps": fps, "total_num_frames": len(frames), "duration": len(frames) / fps})
    kwargs = {}
    if images:
        kwargs["images"] = images
    if videos:
        kwargs["videos"] = videos
        kwargs["video_metadata"] = metas
    out = {k: np.asarray(v) for k, v in proc(text=[prompt], return_tensors="pt", **kwargs).items()}
    tensors = {"input_ids": out["input_ids"][0].astype(np.int64)}
    if images:
        grids = out["image_grid_thw"].astype(np.int64)
        tensors["image_grid_thw"] = grids
        pv, start = out["pixel_values"], 0
        for k, g in enumerate(grids):
            n = int(np.prod(g))
            store_rows(tensors, f"image{k}", pv[start:start + n], "image", k)
            start += n
        if name == "img_floats":
            tensors["pixel_values"] = pv.astype(np.float32)
    if videos:
        grids = out["video_grid_thw"].astype(np.int64)
        tensors["video_grid_thw"] = grids
        pv, start = out["pixel_values_videos"], 0
        for k, g in enumerate(grids):
            n = int(np.prod(g))
            store_rows(tensors, f"video{k}", pv[start:start + n], "video", 100 + k)
            start += n
    save_file(tensors, str(OUT / f"{name}.safetensors"))
    return {"name": name, "config": cfg, "messages": messages, "prompt": prompt,
            "expected": f"{name}.safetensors"}


def run_template_case(proc, name, messages, tools):
    prompt = proc.apply_chat_template(hf_messages(messages), tools=tools, add_generation_prompt=True, tokenize=False)
    ids = proc.tokenizer(prompt)["input_ids"]
    return {"name": name, "messages": messages, "tools": tools, "prompt": prompt, "input_ids": ids}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer-dir", default=os.path.expanduser("~/.cache/qwen3vl"))
    args = ap.parse_args()
    make_inputs()
    procs = {k: build_processor(args.tokenizer_dir, c) for k, c in CONFIGS.items()}
    media = [run_media_case(procs, *c) for c in MEDIA_CASES]
    templates = [run_template_case(procs["default"], *c) for c in TEMPLATE_CASES]
    doc = {"generator": "scripts/ref/gen_processor_fixtures.py",
           "transformers": __import__("transformers").__version__,
           "configs": CONFIGS, "media_cases": media, "template_cases": templates}
    (OUT / "cases.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {len(media)} media cases, {len(templates)} template cases; {total / 1e6:.2f} MB", file=sys.stderr)


if __name__ == "__main__":
    main()
