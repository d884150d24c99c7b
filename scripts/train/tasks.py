"""Procedurally generated visual question answering tasks for the trained demo model.

Every sample is drawn from a `random.Random(seed)`, so a seed fixes the whole stream (images,
questions, answers). Shapes are drawn with plain integer geometry (no anti-aliasing) so that
`examples/demo.rs` can draw the same pictures in Rust; sign text uses Pillow's built-in font.

A sample is a dict: kind ("image" | "video" | "text"), media (list of PIL images: one image, or
the frames of a clip), question, answer, task (name, for per-task accuracy).
"""

import random

from PIL import Image, ImageDraw, ImageFont

# Saturated colours on light backgrounds; the names are the answers.
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 60, 220),
    "yellow": (230, 200, 20),
    "purple": (140, 40, 170),
    "orange": (240, 130, 20),
}
BACKGROUNDS = [(255, 255, 255), (235, 235, 235), (245, 240, 225), (225, 235, 245)]
SHAPES = ["circle", "square", "triangle"]
PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles"}

# Words on signs (and in the read-out task): upper case, as signs are.
SIGN_WORDS = (
    "STOP OPEN EXIT SALE PARK BUS TAXI HOTEL CAFE BANK SHOP PIZZA MILK BREAD BOOK MUSIC "
    "PHONE WATER FIRE POLICE SCHOOL HOME NORTH SOUTH EAST WEST SLOW PUSH PULL FREE HELLO "
    "TOYS FOOD GAS GARDEN MARKET"
).split()
# Words of the sentences to repeat (the copy task).
SENTENCE_WORDS = (
    "the a cat dog bird fish red blue green small big old new happy quick slow runs jumps "
    "sits sleeps eats sees likes finds over under near on in with and by house tree river "
    "park car book ball box table garden city night day morning sun moon rain snow today "
    "again very every little bright dark warm cold"
).split()

GRID = 2  # shape pictures: 2x2 cells of 32 px = 64x64; each visual token covers one cell
IMAGE_SIZE = 32 * GRID
SIGN_SIZE = (128, 32)  # signs: one row of 4 visual tokens
PAGE_SIZE = (128, 128)  # read-out pages: 16 visual tokens
CLIP_SIZE = 64  # clip frames: 4 frames of 64x64, 8 visual tokens
CLIP_FRAMES = 4
CLIP_STEP = 8  # pixels a moving shape travels per frame


def draw_shape(img, shape, colour, cx, cy, r):
    """Fills `shape` of radius `r` centred on (cx, cy): integer tests on pixel centres.

    circle: (x-cx)^2 + (y-cy)^2 <= r^2; square: |x-cx|, |y-cy| <= 7r/8;
    triangle (apex up): cy-r <= y <= cy+r and 2|x-cx| <= y-cy+r.
    """
    px = img.load()
    w, h = img.size
    s = r * 7 // 8
    for y in range(max(0, cy - r), min(h, cy + r + 1)):
        for x in range(max(0, cx - r), min(w, cx + r + 1)):
            dx, dy = x - cx, y - cy
            if shape == "circle":
                inside = dx * dx + dy * dy <= r * r
            elif shape == "square":
                inside = abs(dx) <= s and abs(dy) <= s
            else:
                inside = 2 * abs(dx) <= dy + r
            if inside:
                px[x, y] = colour


def place_shapes(rng, n):
    """n objects in distinct cells of the grid: (shape, colour, cx, cy, r, col, row)."""
    cells = rng.sample(range(GRID * GRID), n)
    out = []
    for cell in cells:
        col, row = cell % GRID, cell // GRID
        r = rng.randint(7, 12)
        slack = 16 - r - 1
        cx = col * 32 + 16 + rng.randint(-slack, slack)
        cy = row * 32 + 16 + rng.randint(-slack, slack)
        out.append([None, None, cx, cy, r, col, row])
    return out


def picture(rng, objects):
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), rng.choice(BACKGROUNDS))
    # What each grid cell (= visual token) holds, 0 = empty: training's auxiliary targets.
    cells = [(0, 0)] * (GRID * GRID)
    for shape, colour, cx, cy, r, col, row in objects:
        draw_shape(img, shape, COLOURS[colour], cx, cy, r)
        cells[row * GRID + col] = (1 + list(COLOURS).index(colour), 1 + SHAPES.index(shape))
    img.info["cells"] = cells
    return img


def article(word):
    return "an" if word[0] in "aeiou" else "a"


def task_describe(rng):
    objs = place_shapes(rng, 1)
    objs[0][0], objs[0][1] = rng.choice(SHAPES), rng.choice(list(COLOURS))
    _, colour, *_ = objs[0]
    answer = f"{article(colour)} {colour} {objs[0][0]}"
    q = rng.choice(["What is in this picture?", "What do you see?", "Describe the picture."])
    return picture(rng, objs), q, answer


def task_colour(rng):
    n = rng.randint(1, 3)
    objs = place_shapes(rng, n)
    shapes = rng.sample(SHAPES, n)
    for o, s in zip(objs, shapes):
        o[0], o[1] = s, rng.choice(list(COLOURS))
    target = rng.choice(objs)
    return picture(rng, objs), f"What colour is the {target[0]}?", target[1]


def task_shape(rng):
    n = rng.randint(1, 3)
    objs = place_shapes(rng, n)
    colours = rng.sample(list(COLOURS), n)
    for o, c in zip(objs, colours):
        o[0], o[1] = rng.choice(SHAPES), c
    target = rng.choice(objs)
    return picture(rng, objs), f"What shape is the {target[1]} object?", target[0]


def task_count(rng):
    n = rng.randint(1, GRID * GRID)
    objs = place_shapes(rng, n)
    for o in objs:
        o[0], o[1] = rng.choice(SHAPES), rng.choice(list(COLOURS))
    if rng.random() < 0.5:
        return picture(rng, objs), "How many shapes are there?", str(n)
    shape = rng.choice(SHAPES)
    k = sum(1 for o in objs if o[0] == shape)
    return picture(rng, objs), f"How many {PLURAL[shape]} are there?", str(k)


def task_position(rng):
    while True:
        objs = place_shapes(rng, 2)
        a, b = objs
        if rng.random() < 0.5 and a[5] != b[5]:
            axis, rel = "horizontal", "left" if a[5] < b[5] else "right"
            break
        if a[6] != b[6]:
            axis, rel = "vertical", "above" if a[6] < b[6] else "below"
            break
    pairs = rng.sample([(s, c) for s in SHAPES for c in COLOURS], 2)
    for o, (s, c) in zip(objs, pairs):
        o[0], o[1] = s, c
    na, nb = f"{a[1]} {a[0]}", f"{b[1]} {b[0]}"
    if axis == "horizontal":
        q = f"Is the {na} to the left or to the right of the {nb}?"
    else:
        q = f"Is the {na} above or below the {nb}?"
    return picture(rng, objs), q, rel


def font(size):
    return ImageFont.load_default(size=size)


def dark(rng):
    return tuple(rng.randint(0, 70) for _ in range(3))


def light(rng):
    return tuple(rng.randint(200, 255) for _ in range(3))


def task_sign(rng):
    w, h = SIGN_SIZE
    img = Image.new("RGB", (w, h), rng.choice(BACKGROUNDS))
    d = ImageDraw.Draw(img)
    if rng.random() < 0.7:
        text, q = rng.choice(SIGN_WORDS), "What is written on the sign?"
    else:
        text, q = str(rng.randint(1, 99)), "What number is on the sign?"
    f = font(rng.randint(17, 20))
    x0, y0, x1, y1 = d.textbbox((0, 0), text, font=f)
    tw, th = x1 - x0, y1 - y0
    x = rng.randint(6, max(6, w - tw - 6)) - x0
    y = rng.randint(3, max(3, h - th - 3)) - y0
    board = (x + x0 - 4, y + y0 - 3, x + x1 + 4, y + y1 + 3)
    sign_colour = rng.choice([(250, 250, 250), (255, 230, 120), (170, 210, 255), (255, 190, 190)])
    d.rectangle(board, fill=sign_colour, outline=(40, 40, 40))
    d.text((x, y), text, font=f, fill=dark(rng))
    return img, q, text


def task_readout(rng):
    w, h = PAGE_SIZE
    img = Image.new("RGB", (w, h), light(rng))
    d = ImageDraw.Draw(img)
    n = rng.randint(2, 4)
    words = [rng.choice(SIGN_WORDS) for _ in range(n)]
    f = font(18)
    band = h // n
    for i, word in enumerate(words):
        x0, y0, x1, y1 = d.textbbox((0, 0), word, font=f)
        x = rng.randint(4, max(4, w - (x1 - x0) - 4)) - x0
        y = i * band + rng.randint(0, max(0, band - (y1 - y0) - 2)) - y0
        d.text((x, y), word, font=f, fill=dark(rng))
    return img, "Read out all the text in the image.", " ".join(words)


def task_repeat(rng):
    words = [rng.choice(SENTENCE_WORDS) for _ in range(rng.randint(4, 10))]
    sentence = " ".join(words)
    return None, f"Repeat this sentence: {sentence}", sentence


DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


def clip(rng, shape, colours, cx, cy, r, dx, dy):
    bg = rng.choice(BACKGROUNDS)
    frames = []
    for t in range(CLIP_FRAMES):
        img = Image.new("RGB", (CLIP_SIZE, CLIP_SIZE), bg)
        draw_shape(img, shape, COLOURS[colours[t]], cx + dx * t, cy + dy * t, r)
        frames.append(img)
    return frames


def task_motion(rng):
    """A shape moving CLIP_STEP pixels per frame: which way does it move?"""
    direction = rng.choice(list(DIRECTIONS))
    dx, dy = (v * CLIP_STEP for v in DIRECTIONS[direction])
    r = rng.randint(6, 9)
    span = CLIP_STEP * (CLIP_FRAMES - 1)
    lo, hi = r + 1, CLIP_SIZE - r - 2
    cx = rng.randint(lo + (span if dx < 0 else 0), hi - (span if dx > 0 else 0))
    cy = rng.randint(lo + (span if dy < 0 else 0), hi - (span if dy > 0 else 0))
    shape, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
    frames = clip(rng, shape, [colour] * CLIP_FRAMES, cx, cy, r, dx, dy)
    return frames, f"Which way does the {colour} {shape} move?", direction


def task_colour_order(rng):
    """A shape that changes colour halfway (aligned with the 2-frame temporal patches)."""
    c1, c2 = rng.sample(list(COLOURS), 2)
    r = rng.randint(8, 14)
    cx, cy = rng.randint(r + 1, CLIP_SIZE - r - 2), rng.randint(r + 1, CLIP_SIZE - r - 2)
    frames = clip(rng, rng.choice(SHAPES), [c1, c1, c2, c2], cx, cy, r, 0, 0)
    which = rng.choice(["first", "second"])
    return frames, f"What colour appears {which}?", c1 if which == "first" else c2


# name: (generator, kind, weight). Short-answer tasks carry most of the weight.
TASKS = {
    "describe": (task_describe, "image", 1.0),
    "colour": (task_colour, "image", 1.0),
    "shape": (task_shape, "image", 1.0),
    "count": (task_count, "image", 1.2),
    "position": (task_position, "image", 1.2),
    "sign": (task_sign, "image", 1.6),
    "motion": (task_motion, "video", 0.8),
    "colour_order": (task_colour_order, "video", 0.6),
    "repeat": (task_repeat, "text", 0.6),
    "readout": (task_readout, "image", 0.6),
}
SHORT_TASKS = [t for t in TASKS if t not in ("repeat", "readout")]
# What `qwen3vl bench` (AISBench TextVQA) appends to each question; half the short-answer samples
# carry it so that both the bare question and the benchmark prompt are in distribution.
TEXTVQA_SUFFIX = " Answer the question using a single word or phrase."


def sample(rng, tasks=None):
    names = tasks or list(TASKS)
    weights = [TASKS[n][2] for n in names]
    name = rng.choices(names, weights)[0]
    gen, kind, _ = TASKS[name]
    media, question, answer = gen(rng)
    if name in SHORT_TASKS and rng.random() < 0.5:
        question += TEXTVQA_SUFFIX
    if kind == "image":
        media = [media]
    elif kind == "text":
        media = []
    return {"task": name, "kind": kind, "media": media, "question": question, "answer": answer}
