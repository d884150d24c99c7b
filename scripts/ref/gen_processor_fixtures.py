#!/usr/bin/env python3
"""Generates the Hugging Face processor fixtures used by tests/preprocess_*.rs and tests/prompt_*.rs.

Run with the pinned reference env (transformers 4.57.x). Images go through transformers' default
image processor, `Qwen2VLImageProcessorFast` (torchvision), as `AutoProcessor` and vLLM use it;
one case keeps the slow PIL `Qwen2VLImageProcessor` for the engine's opt-in parity mode.
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

from transformers import Qwen2TokenizerFast, Qwen2VLImageProcessor, Qwen2VLImageProcessorFast
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
    # Small budgets: exercises the downscale branches with small outputs (explicit min_pixels /
    # max_pixels override `size`, as in transformers).
    "small": {
        "preprocessor": {**DEFAULT_PRE, "min_pixels": 1024, "max_pixels": 200000},
        "video": {**DEFAULT_VIDEO, "size": {"longest_edge": 300000, "shortest_edge": 4096}},
    },
    # Other interpolation filters (PIL codes 2 = bilinear, 0 = nearest), shrinking and enlarging.
    "bilinear": {
        "preprocessor": {**DEFAULT_PRE, "resample": 2, "min_pixels": 1024, "max_pixels": 200000},
        "video": {**DEFAULT_VIDEO, "resample": 2, "size": {"longest_edge": 300000, "shortest_edge": 4096}},
    },
    "nearest": {
        "preprocessor": {**DEFAULT_PRE, "resample": 0, "min_pixels": 1024, "max_pixels": 200000},
        "video": {**DEFAULT_VIDEO, "resample": 0, "size": {"longest_edge": 300000, "shortest_edge": 4096}},
    },
    "slow_bilinear": {"preprocessor": {**DEFAULT_PRE, "resample": 2}, "video": DEFAULT_VIDEO, "slow": True},
    # The shipped files through the slow PIL processor, whose __init__ replaces `size` by the
    # Qwen2-VL class defaults [3136, 1003520] (the engine's opt-in `slow_parity` mode).
    "slow": {"preprocessor": DEFAULT_PRE, "video": DEFAULT_VIDEO, "slow": True},
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


def load_image(path, background="white"):
    """EXIF orientation applied; alpha composited on white (default, as vLLM and qwen-vl-utils),
    on black, or dropped ("drop": PIL's convert("RGB"), as transformers' load_image)."""
    img = ImageOps.exif_transpose(Image.open(path))
    if background != "drop" and (
            img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)):
        img = img.convert("RGBA")
        grey = 255 if background == "white" else 0
        bg = Image.new("RGB", img.size, (grey, grey, grey))
        bg.paste(img, mask=img.split()[3])
        return bg
    return img.convert("RGB")


def image_init_kwargs(pre, kw):
    """The image processor's init kwargs with a request's mm_processor_kwargs layered on top
    (vLLM builds the processor from them): `size` replaces both bounds, then min/max_pixels one each."""
    out = copy.deepcopy(pre)
    if "size" in kw:
        out["size"] = dict(kw["size"])
        out.pop("min_pixels", None)
        out.pop("max_pixels", None)
    for k in ("min_pixels", "max_pixels"):
        if k in kw:
            out[k] = kw[k]
    return out


def video_init_kwargs(vid, kw):
    out = copy.deepcopy(vid)
    if "size" in kw:
        out["size"] = dict(kw["size"])
    if "total_pixels" in kw:
        out["size"] = {**out["size"], "longest_edge": kw["total_pixels"]}
    for k in ("fps", "min_frames", "max_frames"):
        if k in kw:
            out[k] = kw[k]
    if "num_frames" in kw:
        out["num_frames"], out["fps"] = kw["num_frames"], None
    return out


def build_processor(tok_dir, cfg, kw=None):
    kw = kw or {}
    tok = Qwen2TokenizerFast.from_pretrained(str(tok_dir))
    image_cls = Qwen2VLImageProcessor if cfg.get("slow") else Qwen2VLImageProcessorFast
    return Qwen3VLProcessor(
        image_processor=image_cls(**image_init_kwargs(cfg["preprocessor"], kw)),
        tokenizer=tok,
        video_processor=Qwen3VLVideoProcessor(**video_init_kwargs(cfg["video"], kw)),
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
    # The slow PIL processor (opt-in parity mode): the shipped `size` is ignored.
    ("slow_img_large_jpeg", "slow", [{"role": "user", "content": [part("image", "large.jpg"), text("What is it?")]}]),
    ("slow_img_odd", "slow", [{"role": "user", "content": [part("image", "odd.png")]}]),
    ("bilinear_mixed", "bilinear", [{"role": "user", "content": [
        part("image", "large.jpg"), part("image", "small40x70.png"), part("video", "odd.webm")]}]),
    ("nearest_mixed", "nearest", [{"role": "user", "content": [
        part("image", "large.jpg"), part("image", "small40x70.png"), part("video", "odd.webm")]}]),
    ("slow_bilinear_odd", "slow_bilinear", [{"role": "user", "content": [part("image", "odd.png"), part("image", "tiny.png")]}]),
]

# Requests with vLLM's mm_processor_kwargs: the grid must change exactly as transformers' does
# for a processor built with the same settings.
KWARG_CASES = [
    ("kw_max_pixels", "default", {"max_pixels": 50000},
     [{"role": "user", "content": [part("image", "large.jpg"), text("Small, please.")]}]),
    ("kw_min_max", "default", {"min_pixels": 200000, "max_pixels": 400000},
     [{"role": "user", "content": [part("image", "odd.png")]}]),
    ("kw_size", "default", {"size": {"shortest_edge": 4096, "longest_edge": 100000}},
     [{"role": "user", "content": [part("image", "photo448.jpg"), part("video", "clip.mp4")]}]),
    ("kw_video_fps", "default", {"fps": 4},
     [{"role": "user", "content": [part("video", "clip.mp4"), text("Faster.")]}]),
    ("kw_video_num_frames", "default", {"num_frames": 6, "total_pixels": 60000},
     [{"role": "user", "content": [part("video", "clip.mp4")]}]),
    ("kw_video_min_frames", "default", {"min_frames": 10, "max_frames": 16},
     [{"role": "user", "content": [part("video", "odd.webm")]}]),
]

# Per-item settings (qwen-vl-utils message fields, or inside the image_url object), layered over
# the request's: each item is preprocessed by a processor built with its own settings, and the
# placeholders are expanded with HF's rule (grid.prod() // merge**2 per image).
def item(kind, name, **fields):
    return {"type": kind, kind: f"file://inputs/{name}", **fields}


ITEM_CASES = [
    ("item_pixels", "default", {"max_pixels": 300000}, [{"role": "user", "content": [
        item("image", "large.jpg", max_pixels=40000),
        {"type": "image_url", "image_url": {"url": "file://inputs/odd.png", "min_pixels": 300000, "max_pixels": 500000}},
        part("image", "photo448.jpg"),
        text("Three sizes.")]}]),
    ("item_image_in_url", "small", {"max_pixels": 60000}, [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "file://inputs/odd.png", "detail": "high", "max_pixels": 20000}},
        text("One.")]}]),
]

# One video with its own settings over the request's: the full processor built with the layered
# settings gives the exact timestamped placeholder text.
VIDEO_ITEM_CASES = [
    ("item_video", "default", {"fps": 1}, {"num_frames": 4, "total_pixels": 30000},
     [{"role": "user", "content": [item("video", "clip.mp4", nframes=4, total_pixels=30000), text("Clip.")]}]),
]

# Alpha flattening settings (the default, white, is covered by img_multi).
RGBA_CASES = [
    ("rgba_black", "default", "black", [{"role": "user", "content": [part("image", "rgba.png")]}]),
    ("rgba_drop", "default", "drop", [{"role": "user", "content": [part("image", "rgba.png"), part("image", "la.png")]}]),
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
                if p["type"] in ("image_url", "video_url", "image", "video"):
                    ref = p[p["type"]]
                    url = ref if isinstance(ref, str) else ref["url"]
                    items.append((p["type"][:5], url.removeprefix("file://")))
    return items


def quantize(rows, kind):
    q = np.clip(np.round(rows.astype(np.float64) * 127.5 + 127.5), 0, 255).astype(np.uint8)
    if kind == "slow_image":
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


def run_media_case(procs, name, cfg, messages, kw=None, background="white", tok_dir=None, record_kw=None):
    proc = procs[cfg] if not kw else build_processor(tok_dir, CONFIGS[cfg], kw)
    prompt = proc.apply_chat_template(hf_messages(messages), add_generation_prompt=True, tokenize=False)
    images, videos, metas = [], [], []
    for kind, rel in media_of(messages):
        if kind == "image":
            images.append(load_image(OUT / rel, background))
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
            store_rows(tensors, f"image{k}", pv[start:start + n],
                       "slow_image" if CONFIGS[cfg].get("slow") else "image", k)
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
    case = {"name": name, "config": cfg, "messages": messages, "prompt": prompt,
            "expected": f"{name}.safetensors"}
    if record_kw is not None:
        case["mm_processor_kwargs"] = record_kw
    elif kw:
        case["mm_processor_kwargs"] = kw
    if background != "white":
        case["rgba_background"] = background
    return case


ITEM_KEYS = ("min_pixels", "max_pixels", "size", "total_pixels", "fps", "nframes", "num_frames", "min_frames", "max_frames")


def item_settings(p):
    """Per-item settings of a content part: fields on the part, then inside the url object."""
    out = {k: v for k, v in p.items() if k in ITEM_KEYS}
    inner = p.get(p["type"]) if p["type"].endswith("_url") else None
    if isinstance(inner, dict):
        out.update({k: v for k, v in inner.items() if k in ITEM_KEYS})
    if "nframes" in out:
        out["num_frames"] = out.pop("nframes")
    return out


def layered(lower, top):
    out = dict(lower)
    if "size" in top:
        for k in ("min_pixels", "max_pixels", "total_pixels"):
            out.pop(k, None)
    if "num_frames" in top:
        out.pop("fps", None)
    if "fps" in top:
        out.pop("num_frames", None)
    out.update(top)
    return out


def run_item_case(tok_dir, name, cfg, kw, messages):
    """Each item through a processor built with request + item settings; ids expanded by HF's rule."""
    base = build_processor(tok_dir, CONFIGS[cfg])
    prompt = base.apply_chat_template(hf_messages(messages), add_generation_prompt=True, tokenize=False)
    tensors, image_grids, video_grids = {}, [], []
    parts = [p for m in messages if isinstance(m.get("content"), list) for p in m["content"]
             if p["type"] != "text"]
    n_img = n_vid = 0
    for p in parts:
        settings = layered(kw, item_settings(p))
        proc = build_processor(tok_dir, CONFIGS[cfg], settings)
        kind = p["type"].removesuffix("_url")
        ref = p[p["type"]] if not p["type"].endswith("_url") else p[p["type"]]
        url = ref if isinstance(ref, str) else ref["url"]
        rel = url.removeprefix("file://")
        if kind == "image":
            out = proc.image_processor(images=[load_image(OUT / rel)], return_tensors="pt")
            g = out["image_grid_thw"].numpy().astype(np.int64)
            image_grids.append(g[0])
            store_rows(tensors, f"image{n_img}", out["pixel_values"].numpy(), "image", n_img)
            n_img += 1
        else:
            raise ValueError("per-item video settings go in VIDEO_ITEM_CASES")
    # HF's placeholder expansion, item by item, in prompt order.
    tok = base.tokenizer
    merge = 4
    ids = tok(prompt)["input_ids"]
    image_pad = tok.convert_tokens_to_ids("<|image_pad|>")
    out_ids, gi = [], 0
    for t in ids:
        if t == image_pad:
            out_ids += [image_pad] * int(np.prod(image_grids[gi]) // merge)
            gi += 1
        else:
            out_ids.append(t)
    tensors["input_ids"] = np.array(out_ids, np.int64)
    if image_grids:
        tensors["image_grid_thw"] = np.stack(image_grids)
    if video_grids:
        tensors["video_grid_thw"] = np.stack(video_grids)
    save_file(tensors, str(OUT / f"{name}.safetensors"))
    return {"name": name, "config": cfg, "messages": messages, "prompt": prompt,
            "expected": f"{name}.safetensors", "mm_processor_kwargs": kw}


def run_template_case(proc, name, messages, tools):
    prompt = proc.apply_chat_template(hf_messages(messages), tools=tools, add_generation_prompt=True, tokenize=False)
    ids = proc.tokenizer(prompt)["input_ids"]
    return {"name": name, "messages": messages, "tools": tools, "prompt": prompt, "input_ids": ids}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer-dir", default=os.path.expanduser("~/.cache/qwen3vl"))
    ap.add_argument("--remake-inputs", action="store_true", help="rewrite tests/fixtures/processor/inputs")
    args = ap.parse_args()
    # The committed inputs are kept: re-encoding the videos with another FFmpeg would change them.
    if args.remake_inputs or not (INPUTS / "clip.avi").exists():
        make_inputs()
    procs = {k: build_processor(args.tokenizer_dir, c) for k, c in CONFIGS.items()}
    media = [run_media_case(procs, *c) for c in MEDIA_CASES]
    media += [run_media_case(procs, n, c, m, kw=kw, tok_dir=args.tokenizer_dir) for n, c, kw, m in KWARG_CASES]
    media += [run_item_case(args.tokenizer_dir, *c) for c in ITEM_CASES]
    media += [run_media_case(procs, n, c, m, kw=layered(kw, it), tok_dir=args.tokenizer_dir, record_kw=kw)
              for n, c, kw, it, m in VIDEO_ITEM_CASES]
    media += [run_media_case(procs, n, c, m, background=b) for n, c, b, m in RGBA_CASES]
    templates = [run_template_case(procs["default"], *c) for c in TEMPLATE_CASES]
    doc = {"generator": "scripts/ref/gen_processor_fixtures.py",
           "transformers": __import__("transformers").__version__,
           "configs": CONFIGS, "media_cases": media, "template_cases": templates}
    (OUT / "cases.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {len(media)} media cases, {len(templates)} template cases; {total / 1e6:.2f} MB", file=sys.stderr)


if __name__ == "__main__":
    main()
