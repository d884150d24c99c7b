"""Writes the demo model's evaluation data under assets/demo-eval/ (committed; no Python in CI).

    ~/.cache/qwen3vl-ref/bin/python scripts/train/make_eval.py

* textvqa_val.jsonl + textvqa_val_annotations.json: held-out image questions (seed 20250, never
  seen in training) in AISBench's TextVQA layout, 10 identical answers per question as the
  evaluator expects; `qwen3vl bench` appends TextVQA's " Answer the question using a single word
  or phrase." itself.
* textvqa_slice.jsonl + textvqa_slice_annotations.json: the first 24 of them (the CI bench test).
* mm_custom.jsonl: the same image questions bare, plus held-out clips (frame directories; run
  with --media base64 --num-frames 4), in AISBench's mm_custom layout.
* mm_custom_long.jsonl: held-out read-out-the-text pages (long answers that copy the image text).
* held_in.json: the first 32 training samples (seed 1234, the first batch of train.py), images
  and clips, for the Rust tests that check the model answers what it was trained on.
"""

import json
import os
import random
import shutil

import tasks
from common import REPO

OUT = os.path.join(REPO, "assets", "demo-eval")
HELD_OUT_SEED = 20250
TRAIN_SEED = 1234
IMAGE_TASKS = ["describe", "colour", "shape", "count", "position", "sign"]
N_IMAGES, N_CLIPS, N_LONG, N_SLICE = 240, 40, 30, 24


def draw(rng, names):
    name = rng.choice(names)
    gen, kind, _ = tasks.TASKS[name]
    media, question, answer = gen(rng)
    return {"task": name, "kind": kind, "media": media if kind == "video" else [media],
            "question": question, "answer": answer}


def save_media(sample, stem):
    """Relative path of the image file or the clip's frame directory."""
    if sample["kind"] == "image":
        rel = f"{stem}.png"
        sample["media"][0].save(os.path.join(OUT, rel))
        return rel
    os.makedirs(os.path.join(OUT, stem))
    for i, frame in enumerate(sample["media"]):
        frame.save(os.path.join(OUT, stem, f"frame_{i}.png"))
    return stem


def vqa_answer(answer):
    """The ground truth as TextVQA's annotators write it: lower case, no article. (AISBench
    normalises predictions but leaves a question's ground truth alone when all 10 agree.)"""
    words = answer.lower().split()
    return " ".join(w for w in words if w not in ("a", "an", "the"))


def write_textvqa(name, rows):
    with open(os.path.join(OUT, f"{name}.jsonl"), "w") as f:
        for qid, rel, s in rows:
            f.write(json.dumps({"question_id": qid, "image": rel, "question": s["question"],
                                "task": s["task"]}) + "\n")
    ann = {"annotations": [{"question_id": qid, "answers": [{"answer": vqa_answer(s["answer"]), "answer_id": k}
                                                           for k in range(1, 11)]}
                           for qid, _, s in rows]}
    with open(os.path.join(OUT, f"{name}_annotations.json"), "w") as f:
        json.dump(ann, f, indent=1)
        f.write("\n")


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(os.path.join(OUT, "images"))
    os.makedirs(os.path.join(OUT, "clips"))
    os.makedirs(os.path.join(OUT, "pages"))
    os.makedirs(os.path.join(OUT, "held_in"))
    rng = random.Random(HELD_OUT_SEED)
    rows = []
    for i in range(N_IMAGES):
        s = draw(rng, IMAGE_TASKS)
        rows.append((i, save_media(s, f"images/{i:04d}"), s))
    write_textvqa("textvqa_val", rows)
    write_textvqa("textvqa_slice", rows[:N_SLICE])
    clips = []
    for i in range(N_CLIPS):
        s = draw(rng, ["motion", "colour_order"])
        clips.append((save_media(s, f"clips/{i:04d}"), s))
    with open(os.path.join(OUT, "mm_custom.jsonl"), "w") as f:
        for _, rel, s in rows:
            f.write(json.dumps({"type": "image", "path": [rel], "question": s["question"],
                                "answer": [vqa_answer(s["answer"])] * 10}) + "\n")
        for rel, s in clips:
            f.write(json.dumps({"type": "video", "path": [rel], "question": s["question"],
                                "answer": [vqa_answer(s["answer"])] * 10}) + "\n")
    with open(os.path.join(OUT, "mm_custom_long.jsonl"), "w") as f:
        for i in range(N_LONG):
            s = draw(rng, ["readout"])
            rel = save_media(s, f"pages/{i:04d}")
            f.write(json.dumps({"type": "image", "path": [rel], "question": s["question"],
                                "answer": [vqa_answer(s["answer"])] * 10}) + "\n")
    # train.py's first batch: 32 draws from Random(seed) over the short-answer tasks.
    train = random.Random(TRAIN_SEED)
    held_in = []
    for i in range(32):
        s = tasks.sample(train, tasks.SHORT_TASKS)
        rel = save_media(s, f"held_in/{i:02d}")
        held_in.append({"task": s["task"], "kind": s["kind"], "path": rel,
                        "question": s["question"], "answer": s["answer"]})
    with open(os.path.join(OUT, "held_in.json"), "w") as f:
        json.dump(held_in, f, indent=1)
        f.write("\n")
    # One picture per shape/colour pairing, with its drawing list: examples/demo_support draws the
    # same list in Rust and must match pixel for pixel.
    objs = [[shape, colour, 8 + 16 * (i % 4), 8 + 16 * (i // 4), 7 + i % 6, 0, 0]
            for i, (shape, colour) in enumerate(zip(tasks.SHAPES * 6, list(tasks.COLOURS) * 3))]
    img = tasks.Image.new("RGB", (tasks.IMAGE_SIZE, tasks.IMAGE_SIZE), tasks.BACKGROUNDS[2])
    for shape, colour, cx, cy, r, _, _ in objs[:16]:
        tasks.draw_shape(img, shape, tasks.COLOURS[colour], cx, cy, r)
    img.save(os.path.join(OUT, "drawing.png"))
    with open(os.path.join(OUT, "drawing.json"), "w") as f:
        json.dump({"background": tasks.BACKGROUNDS[2],
                   "objects": [{"shape": o[0], "colour": o[1], "cx": o[2], "cy": o[3], "r": o[4]}
                               for o in objs[:16]]}, f, indent=1)
        f.write("\n")
    print(f"{len(rows)} image questions, {len(clips)} clips, {N_LONG} pages, {len(held_in)} held-in")


if __name__ == "__main__":
    main()
