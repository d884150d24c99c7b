"""Runs an evaluation set through transformers (greedy, bf16, eager attention) on the demo model
and prints its VQA accuracy; with --ours, compares question by question with the accuracy file
of a `qwen3vl bench --mode all` run on the same set.

    ~/.cache/qwen3vl-ref/bin/python scripts/train/eval_transformers.py --model models/demo \
        --dataset assets/demo-eval/textvqa_val.jsonl [--ours bench-results/x_accuracy.jsonl]

The prompt is built the way `qwen3vl bench` builds it: TextVQA questions get AISBench's suffix,
mm_custom questions go as they are; one user message, media first, then the text.
"""

import argparse
import json
import os
import re

import numpy as np
import torch
from PIL import Image

import common

torch.set_num_threads(1)
SUFFIX = " Answer the question using a single word or phrase."


def load_dataset(path, num_frames):
    base = os.path.dirname(os.path.abspath(path))
    rows = [json.loads(line) for line in open(path) if line.strip()]
    out = []
    if "question_id" in rows[0]:
        stem = os.path.basename(path).split(".")[0]
        ann = json.load(open(os.path.join(base, f"{stem}_annotations.json")))
        answers = {a["question_id"]: [x["answer"] for x in a["answers"]] for a in ann["annotations"]}
        for r in rows:
            img = Image.open(os.path.join(base, r["image"])).convert("RGB")
            out.append({"id": str(r["question_id"]), "kind": "image", "media": [img],
                        "question": r["question"] + SUFFIX, "answers": answers[r["question_id"]]})
        return out
    for n, r in enumerate(rows, 1):
        path0 = os.path.join(base, r["path"][0])
        if r["type"] == "video":
            files = sorted(f for f in os.listdir(path0) if f.endswith((".png", ".jpg")))
            # AISBench / qwen3vl bench: np.linspace(0, n-1, num_frames), rounded
            idx = np.round(np.linspace(0, len(files) - 1, min(num_frames, len(files)))).astype(int)
            media = [Image.open(os.path.join(path0, files[i])).convert("RGB") for i in idx]
        else:
            media = [Image.open(path0).convert("RGB")]
        ans = r["answer"] if isinstance(r["answer"], list) else [r["answer"]]
        out.append({"id": str(n), "kind": r["type"], "media": media, "question": r["question"],
                    "answers": ans})
    return out


# --- AISBench TEXTEvaluator's normalisation (the standard VQA one) ---
CONTRACTIONS = {"dont": "don't", "doesnt": "doesn't", "isnt": "isn't", "arent": "aren't",
                "cant": "can't", "wont": "won't", "im": "i'm", "ive": "i've", "youre": "you're"}
NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
           "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = {"a", "an", "the"}
PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@",
         "`", ",", "?", "!"]
PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA = re.compile(r"(\d)(,)(\d)")


def normalise(text):
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.S)
    text = text.replace("\n", " ").replace("\t", " ").strip()
    out = text
    for p in PUNCT:
        if (p + " " in text or " " + p in text) or re.search(COMMA, text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = PERIOD.sub("", out)
    words = []
    for w in out.lower().split():
        w = NUMBERS.get(w, w)
        if w not in ARTICLES:
            words.append(CONTRACTIONS.get(w, w))
    return " ".join(words)


def punctuation(text):
    out = text
    for p in PUNCT:
        if (p + " " in text or " " + p in text) or re.search(COMMA, text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return PERIOD.sub("", out)


def vqa_score(prediction, answers):
    pred = normalise(prediction)
    # As AISBench: the ground truth only loses punctuation, and only when the answers differ.
    gts = [punctuation(a) for a in answers] if len(set(answers)) > 1 else list(answers)
    scores = []
    for i in range(len(gts)):
        others = gts[:i] + gts[i + 1:]
        scores.append(min(1.0, sum(1 for g in others if g == pred) / 3))
    return sum(scores) / len(scores) if answers else 0.0


def load_held_in(path):
    base = os.path.dirname(os.path.abspath(path))
    rows = json.load(open(path))
    out = []
    for r in rows:
        p = os.path.join(base, r["path"])
        if r["kind"] == "video":
            media = [Image.open(os.path.join(p, f)).convert("RGB") for f in sorted(os.listdir(p))]
        else:
            media = [Image.open(p).convert("RGB")]
        out.append({"id": r["path"], "kind": r["kind"], "media": media, "question": r["question"],
                    "answers": [r["answer"]]})
    return rows, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--num-frames", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--ours", help="accuracy JSONL of a qwen3vl bench run on the same dataset")
    ap.add_argument("--out", help="write predictions here (JSONL)")
    ap.add_argument("--held-in", action="store_true",
                    help="the dataset is held_in.json: record transformers' answer in it")
    args = ap.parse_args()

    proc = common.processor()
    model = common.Qwen3VLForConditionalGeneration.from_pretrained(
        args.model, dtype=torch.bfloat16, attn_implementation="eager")
    model.eval()
    if args.held_in:
        rows, data = load_held_in(args.dataset)
    else:
        data = load_dataset(args.dataset, args.num_frames)
    preds = []
    for s in data:
        batch = common.encode(proc, [s], False)
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=args.max_tokens, do_sample=False)
        text = proc.tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        preds.append(text)
    if args.held_in:  # exact answers, no VQA scoring (one ground truth each)
        scores = [float(p.strip() == s["answers"][0]) for p, s in zip(preds, data)]
    else:
        scores = [vqa_score(p, s["answers"]) for p, s in zip(preds, data)]
    acc = 100 * sum(scores) / len(scores)
    print(f"transformers: {acc:.2f} % over {len(data)} questions")
    if args.held_in:
        # The Rust tests expect our engine to answer correctly wherever transformers does.
        for r, p in zip(rows, preds):
            r["transformers"] = p.strip()
        with open(args.dataset, "w") as f:
            json.dump(rows, f, indent=1)
            f.write("\n")
    if args.out:
        with open(args.out, "w") as f:
            for s, p, sc in zip(data, preds, scores):
                f.write(json.dumps({"id": s["id"], "question": s["question"], "prediction": p,
                                    "answers": s["answers"][:1], "score": sc}) + "\n")
    if args.ours:
        ours = [json.loads(line) for line in open(args.ours) if line.strip()]
        ours.sort(key=lambda o: o["index"])  # the bench writes lines in completion order
        assert len(ours) == len(data), (len(ours), len(data))
        our_scores = [o["score"] for o in ours]
        print(f"qwen3vl:      {100 * sum(our_scores) / len(our_scores):.2f} %")
        diff = 0
        for s, p, o in zip(data, preds, ours):
            if p.strip() != str(o["prediction"]).strip():
                diff += 1
                print(f"  differs: id {s['id']} {s['question']!r}: transformers {p!r}, "
                      f"qwen3vl {o['prediction']!r}, truth {s['answers'][0]!r}")
        print(f"{diff} of {len(data)} predictions differ")


if __name__ == "__main__":
    main()
