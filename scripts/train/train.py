"""Trains the demo Qwen3-VL from scratch on the procedural tasks of tasks.py and exports it.

    ~/.cache/qwen3vl-ref/bin/python scripts/train/train.py --steps 1800 --out /tmp/demo-train

Deterministic: one thread, fixed seeds, data drawn from random.Random(seed). Only the token rows
the task family can produce (the "used" vocabulary) are trained; every other row of the 151,936 x
256 tied embedding is zero from the start and stays zero. The loss is nevertheless the full-
vocabulary cross-entropy: the untouched rows all have logit exactly 0, so their softmax mass is one
extra logit of log(#untouched) — the model learns to beat them, as it must at inference.
"""

import argparse
import json
import math
import os
import random
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import common
import tasks

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


def used_vocabulary(proc, seed):
    """Every token id a sample's text can contain: a large sample of prompts + answers, and each
    word list spelled every way it can appear (sentence start, after a space)."""
    rng = random.Random(seed)
    tok = proc.tokenizer
    ids = set()
    for _ in range(3000):
        s = tasks.sample(rng)
        batch = common.encode(proc, [s], True)
        ids.update(batch["input_ids"][0].tolist())
    words = tasks.SIGN_WORDS + tasks.SENTENCE_WORDS + list(tasks.COLOURS) + tasks.SHAPES
    words += [str(i) for i in range(100)] + list(tasks.PLURAL.values()) + list(tasks.DIRECTIONS)
    for w in words:
        for text in (w, " " + w, w + " ", "\n" + w):
            ids.update(tok(text)["input_ids"])
    for special in (common.TOP["image_token_id"], common.TOP["video_token_id"]):
        ids.discard(special)  # replaced by visual features: their rows are never read
    return sorted(ids)


class SubsetEmbedding(nn.Module):
    """The tied embedding restricted to `used` rows; any other id reads a constant zero row."""

    def __init__(self, used, hidden, gen):
        super().__init__()
        self.register_buffer("used", torch.tensor(used, dtype=torch.long))
        index = torch.full((common.VOCAB,), len(used), dtype=torch.long)
        index[self.used] = torch.arange(len(used))
        self.register_buffer("index", index)
        self.weight = nn.Parameter(torch.randn(len(used), hidden, generator=gen) * 0.02)

    def forward(self, ids):
        table = torch.cat([self.weight, self.weight.new_zeros(1, self.weight.shape[1])])
        return table[self.index[ids]]


def build_model(seed, used):
    torch.manual_seed(seed)
    model = common.Qwen3VLForConditionalGeneration(common.make_config())
    gen = torch.Generator().manual_seed(seed)
    emb = SubsetEmbedding(used, common.TEXT["hidden_size"], gen)
    model.model.language_model.embed_tokens = emb
    model.lm_head = None  # logits are computed over the used rows only (tied weights)
    return model, emb


class CellProbe(nn.Module):
    """Training-only auxiliary heads (not exported): each visual token of a shape picture must
    say which colour and shape its grid cell holds. This hands the from-scratch vision tower a
    dense signal, which the answer loss alone gives it only after a long plateau."""

    def __init__(self, hidden):
        super().__init__()
        self.colour = nn.Linear(hidden, 1 + len(tasks.COLOURS))
        self.shape = nn.Linear(hidden, 1 + len(tasks.SHAPES))
        self.captured = None

    def hook(self, module, args, output):
        if self.captured is None:  # the first call of a forward pass encodes the images
            self.captured = output

    def loss(self, batch, samples):
        feats, self.captured = self.captured, None
        if feats is None or samples is None:
            return 0.0
        grids = batch.get("image_grid_thw")
        if grids is None:  # no image in the batch: what was captured is a clip's
            return 0.0
        images = [s for s in samples if s["kind"] == "image"]
        rows, colours, shapes, start = [], [], [], 0
        for s, (t, h, w) in zip(images, grids.tolist()):
            n = t * h * w // 4
            cells = s["media"][0].info.get("cells")
            if cells is not None:
                rows.extend(range(start, start + n))
                colours.extend(c for c, _ in cells)
                shapes.extend(k for _, k in cells)
            start += n
        if not rows:
            return 0.0
        x = feats[torch.tensor(rows)]
        return F.cross_entropy(self.colour(x), torch.tensor(colours)) + F.cross_entropy(
            self.shape(x), torch.tensor(shapes))


def loss_and_hits(model, emb, batch, probe=None, samples=None):
    out = model.model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        pixel_values=batch.get("pixel_values"),
        image_grid_thw=batch.get("image_grid_thw"),
        pixel_values_videos=batch.get("pixel_values_videos"),
        video_grid_thw=batch.get("video_grid_thw"),
    )
    h = out.last_hidden_state
    mask = torch.as_tensor(batch["labels_mask"])
    # position p predicts token p + 1
    pred_mask = mask[:, 1:]
    hp = h[:, :-1][pred_mask]
    target = emb.index[batch["input_ids"][:, 1:][pred_mask]]
    logits = hp @ emb.weight.T
    n_rest = common.VOCAB - emb.weight.shape[0]
    rest = torch.full((logits.shape[0], 1), math.log(n_rest))
    # Each sample weighs the same whatever its answer length, so the short visual answers are
    # not drowned by the long copy tasks.
    per_token = F.cross_entropy(torch.cat([logits, rest], 1), target, reduction="none")
    rows = pred_mask.nonzero()[:, 0]
    counts = pred_mask.sum(1).clamp(min=1).to(per_token.dtype)
    loss = (per_token / counts[rows]).sum() / mask.shape[0]
    if probe is not None:
        loss = loss + probe.loss(batch, samples)
    with torch.no_grad():
        # greedy would pick an untouched token (logit 0) if every used logit were below 0
        full = torch.cat([logits, torch.zeros_like(rest)], 1)
        ok = full.argmax(1) == target
        per_sample = torch.ones(mask.shape[0], dtype=torch.bool)
        per_sample[rows[~ok]] = False
    return loss, per_sample


def export(model, emb, out_dir):
    """The full checkpoint (bf16 safetensors + configs) as transformers saves it."""
    from transformers import GenerationConfig

    config = common.make_config()
    full = common.Qwen3VLForConditionalGeneration(config)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("model.language_model.embed_tokens")}
    table = torch.zeros(common.VOCAB, common.TEXT["hidden_size"])
    table[emb.used] = emb.weight.detach()
    state["model.language_model.embed_tokens.weight"] = table
    state["lm_head.weight"] = table
    missing, unexpected = full.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    full = full.to(torch.bfloat16)
    full.generation_config = GenerationConfig(
        bos_token_id=common.PAD_BOS, pad_token_id=common.PAD_BOS,
        eos_token_id=[common.EOS, common.PAD_BOS], do_sample=False,
    )
    os.makedirs(out_dir, exist_ok=True)
    full.save_pretrained(out_dir, safe_serialization=True)
    cpath = os.path.join(out_dir, "config.json")
    with open(cpath) as f:
        cfg = json.load(f)
    cfg["text_config"]["tie_word_embeddings"] = True
    cfg.pop("transformers_version", None)
    with open(cpath, "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    gpath = os.path.join(out_dir, "generation_config.json")
    with open(gpath) as f:
        gcfg = json.load(f)
    gcfg.pop("transformers_version", None)
    with open(gpath, "w") as f:
        f.write(json.dumps(gcfg, indent=2, sort_keys=True) + "\n")


def load_exported(model, emb, path):
    """Weights of an exported checkpoint (bf16) into the training model: the used embedding rows
    into the subset table, everything else by name."""
    from safetensors.torch import load_file

    state = {k: v.float() for k, v in load_file(os.path.join(path, "model.safetensors")).items()}
    table = state.pop("model.language_model.embed_tokens.weight")
    state.pop("lm_head.weight", None)
    with torch.no_grad():
        emb.weight.copy_(table[emb.used])
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("embed_tokens" in k for k in missing), (missing, unexpected)


def lr_at(step, total, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1800)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--out", required=True)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--save-every", type=int, default=300)
    ap.add_argument("--init-from", help="continue from an exported checkpoint (a second phase)")
    ap.add_argument("--data-seed", type=int, help="seed of the sample stream (default: --seed)")
    ap.add_argument("--short-first", type=float, default=0.15,
                    help="fraction of the steps that see short-answer tasks only")
    args = ap.parse_args()

    proc = common.processor()
    used = used_vocabulary(proc, args.seed + 1)
    print(f"used vocabulary: {len(used)} tokens", flush=True)
    model, emb = build_model(args.seed, used)
    if args.init_from:
        load_exported(model, emb, args.init_from)
    model.train()
    cells = CellProbe(common.TEXT["hidden_size"])
    model.model.visual.merger.register_forward_hook(cells.hook)
    params = list(model.named_parameters()) + [("cells." + n, p) for n, p in cells.named_parameters()]
    decay = [p for n, p in params if p.dim() >= 2 and "embed" not in n]
    rest = [p for n, p in params if not (p.dim() >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98))
    data = random.Random(args.seed if args.data_seed is None else args.data_seed)
    probe = [tasks.sample(random.Random(args.seed + 7 + i)) for i in range(96)]
    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "train_log.txt"), "w")
    t0 = time.time()
    ema = None
    for step in range(args.steps):
        # curriculum: short answers only for the first 15 % of steps
        pool = tasks.SHORT_TASKS if step < args.steps * args.short_first else None
        samples = [tasks.sample(data, pool) for _ in range(args.batch)]
        batch = common.encode(proc, samples, True)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr, 100)
        loss, _ = loss_and_hits(model, emb, batch, cells, samples)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 10 == 0:
            msg = f"step {step} loss {loss.item():.4f} ema {ema:.4f} {time.time() - t0:.0f}s"
            print(msg, flush=True)
            log.write(msg + "\n")
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            model.eval()
            per_task = {}
            with torch.no_grad():
                for i in range(0, len(probe), 32):
                    part = probe[i:i + 32]
                    _, hits = loss_and_hits(model, emb, common.encode(proc, part, True))
                    cells.captured = None
                    for s, h in zip(part, hits.tolist()):
                        per_task.setdefault(s["task"], []).append(h)
            model.train()
            acc = {k: f"{sum(v)}/{len(v)}" for k, v in sorted(per_task.items())}
            msg = f"probe step {step + 1}: {acc}"
            print(msg, flush=True)
            log.write(msg + "\n")
            log.flush()
        if (step + 1) % args.save_every == 0 or step + 1 == args.steps:
            export(model, emb, os.path.join(args.out, "checkpoint"))
    print(f"done in {time.time() - t0:.0f}s, final ema loss {ema:.4f}", flush=True)
    log.write(f"done in {time.time() - t0:.0f}s, final ema loss {ema:.4f}\n")


if __name__ == "__main__":
    main()
