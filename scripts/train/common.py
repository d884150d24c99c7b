"""What training, evaluation and export share: the model config, the processor (built from the
very files the Rust engine reads), and turning samples into chat messages."""

import json
import os

import numpy as np
from transformers import AutoTokenizer, Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor
from transformers.models.qwen2_vl.image_processing_qwen2_vl_fast import Qwen2VLImageProcessorFast
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ASSETS = os.path.join(REPO, "assets", "demo-model")
TOKENIZER_DIR = os.environ.get("QWEN3VL_CACHE", os.path.expanduser("~/.cache/qwen3vl"))
CHAT_TEMPLATE = os.path.join(REPO, "src", "prompt", "chat_template.jinja")

EOS, PAD_BOS = 151645, 151643  # <|im_end|>, <|endoftext|>
VOCAB = 151936

TEXT = dict(
    vocab_size=VOCAB,
    hidden_size=256,
    intermediate_size=768,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=64,
    rms_norm_eps=1e-6,
    rope_theta=5000000.0,
    # head_dim / 2 = 32 frequencies split over (t, h, w), interleaved as in the released models.
    rope_scaling={"rope_type": "default", "mrope_section": [12, 10, 10], "mrope_interleaved": True},
    max_position_embeddings=4096,
    hidden_act="silu",
    attention_bias=False,
    attention_dropout=0.0,
    bos_token_id=PAD_BOS,
    eos_token_id=EOS,
    tie_word_embeddings=True,
)
VISION = dict(
    depth=2,
    hidden_size=128,
    num_heads=4,
    intermediate_size=256,
    out_hidden_size=256,
    patch_size=16,
    temporal_patch_size=2,
    spatial_merge_size=2,
    in_channels=3,
    num_position_embeddings=256,  # a 16x16 grid, interpolated to each image's patch grid
    hidden_act="gelu_pytorch_tanh",
    deepstack_visual_indexes=[0],
)
TOP = dict(image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
           vision_end_token_id=151653, tie_word_embeddings=True)


def make_config():
    return Qwen3VLConfig(text_config=dict(TEXT), vision_config=dict(VISION), **TOP)


def processor():
    """Qwen3VLProcessor from assets/demo-model/*preprocessor_config.json (what the engine reads),
    the real tokenizer and the repository's chat template."""
    with open(os.path.join(ASSETS, "preprocessor_config.json")) as f:
        image_cfg = json.load(f)
    with open(os.path.join(ASSETS, "video_preprocessor_config.json")) as f:
        video_cfg = json.load(f)
    for cfg in (image_cfg, video_cfg):
        for key in ("processor_class", "image_processor_type", "video_processor_type"):
            cfg.pop(key, None)
    tok = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    with open(CHAT_TEMPLATE) as f:
        template = f.read()
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessorFast(**image_cfg),
        tokenizer=tok,
        video_processor=Qwen3VLVideoProcessor(**video_cfg),
        chat_template=template,
    )


def messages(sample):
    """The user turn as an OpenAI-style client sends it: media parts first, then the question."""
    content = []
    if sample["kind"] == "image":
        content.append({"type": "image"})
    elif sample["kind"] == "video":
        content.append({"type": "video"})
    content.append({"type": "text", "text": sample["question"]})
    return [{"role": "user", "content": content}]


def encode(proc, samples, with_answers):
    """Processor outputs for a batch. With answers, the assistant turn is appended and
    `labels_mask` marks the answer tokens and the closing <|im_end|> (what the loss sees)."""
    prompts = [proc.apply_chat_template(messages(s), add_generation_prompt=True) for s in samples]
    texts = [p + s["answer"] + "<|im_end|>" if with_answers else p for p, s in zip(prompts, samples)]
    images = [s["media"][0] for s in samples if s["kind"] == "image"]
    videos = [np.stack([np.asarray(f) for f in s["media"]]) for s in samples if s["kind"] == "video"]
    kwargs = {}
    if videos:
        # Frame lists: every frame is used and timestamps assume 2 fps, as the engine does.
        kwargs["video_metadata"] = [
            {"fps": 2.0, "total_num_frames": len(v), "frames_indices": list(range(len(v)))}
            for v in videos
        ]
        kwargs["do_sample_frames"] = False
    batch = proc(text=texts, images=images or None, videos=videos or None, padding=True,
                 padding_side="right", return_tensors="pt", **kwargs)
    if with_answers:
        # Right padding: each row's answer (+ <|im_end|>) is its last n_answer real tokens. The
        # prompt ends in "\n", which the Qwen pre-tokenizer keeps apart from the answer's first word.
        lengths = batch["attention_mask"].sum(1).tolist()
        mask = np.zeros(batch["input_ids"].shape, dtype=bool)
        for i, s in enumerate(samples):
            n_answer = len(proc.tokenizer(s["answer"])["input_ids"]) + 1
            mask[i, lengths[i] - n_answer:lengths[i]] = True
        batch["labels_mask"] = mask
    return batch
