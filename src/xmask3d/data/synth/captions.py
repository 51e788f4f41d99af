"""Template captions of rendered views, written the way an image captioner would.

A caption names the room type and the two to four most visible objects (by pixel area), with
synonyms ("couch", "bookcase", "fridge"), counts, an occasional colour, random omissions and some
noise (a wrong room type, an object that is not there). It stands in for the image captioner
of the caption-supervised methods (PLA/RegionPLC/XMask3D view captions).
"""

from __future__ import annotations

import numpy as np

SYNONYMS: dict[str, tuple[str, ...]] = {
    "bed": ("bed", "bed", "double bed"), "chair": ("chair", "chair", "wooden chair", "seat"),
    "office chair": ("office chair", "desk chair", "chair", "swivel chair"),
    "armchair": ("armchair", "chair", "lounge chair"), "sofa": ("sofa", "couch", "couch", "settee"),
    "dining table": ("dining table", "table", "kitchen table"),
    "coffee table": ("coffee table", "table", "low table"),
    "end table": ("side table", "end table", "small table"),
    "table": ("table", "conference table", "large table"),
    "desk": ("desk", "work desk", "computer desk", "writing desk"), "door": ("door",),
    "window": ("window",), "bookshelf": ("bookshelf", "bookcase", "book shelf", "shelf"),
    "picture": ("picture", "painting", "framed picture", "artwork"),
    "poster": ("poster", "picture"), "counter": ("counter", "countertop", "kitchen counter"),
    "curtain": ("curtain", "curtain", "drape"), "refrigerator": ("refrigerator", "fridge"),
    "shower curtain": ("shower curtain",), "toilet": ("toilet", "toilet bowl"),
    "sink": ("sink", "washbasin", "basin"), "bathtub": ("bathtub", "tub", "bath"),
    "wardrobe": ("wardrobe", "closet", "cabinet"), "dresser": ("dresser", "chest of drawers"),
    "tv stand": ("tv stand", "media cabinet", "cabinet"),
    "file cabinet": ("file cabinet", "filing cabinet", "cabinet"),
    "cabinet": ("cabinet", "cupboard"), "kitchen cabinet": ("kitchen cabinet", "cupboard"),
    "bathroom vanity": ("vanity", "bathroom cabinet"),
    "trash can": ("trash can", "bin", "garbage can", "waste basket"),
    "stool": ("stool", "bar stool"), "ottoman": ("ottoman", "footstool", "pouf"),
    "bench": ("bench",), "pillow": ("pillow", "cushion"), "lamp": ("lamp", "table lamp"),
    "monitor": ("monitor", "computer monitor", "computer screen"), "keyboard": ("keyboard",),
    "laptop": ("laptop",), "tv": ("tv", "television", "flat screen tv"), "books": ("books",),
    "box": ("box", "cardboard box"), "cup": ("cup", "mug"), "bottle": ("bottle",),
    "bowl": ("bowl",), "plant": ("plant", "potted plant", "houseplant"),
    "microwave": ("microwave",), "mirror": ("mirror",), "towel": ("towel",),
    "whiteboard": ("whiteboard",), "clock": ("clock", "wall clock"), "rug": ("rug", "carpet"),
    "nightstand": ("nightstand", "bedside table"), "faucet": ("faucet", "tap"),
}
ROOM_WORDS = {
    "bedroom": ("bedroom", "bedroom", "bed room", "guest room"),
    "living room": ("living room", "living room", "lounge", "sitting room"),
    "kitchen": ("kitchen",), "bathroom": ("bathroom", "bathroom", "restroom", "washroom"),
    "office": ("office", "office", "study", "workspace"),
    "studio": ("studio", "studio apartment", "apartment", "room"),
}
# the room types a captioner's wrong guess draws from: the five of the first datasets, so that a
# dataset made before studios existed is made again byte for byte (a wrong guess of "studio"
# would change the draw for every room)
GUESSED_ROOMS = ("bedroom", "living room", "kitchen", "bathroom", "office")
DISTRACTORS = {  # objects a captioner might hallucinate in each room type
    "bedroom": ("lamp", "wardrobe", "rug"), "living room": ("tv", "plant", "fireplace"),
    "kitchen": ("oven", "microwave", "stove"), "bathroom": ("mirror", "towel", "shower"),
    "office": ("computer", "printer", "lamp"),
    "studio": ("tv", "lamp", "oven"),
}
ADJECTIVES = ("small", "cozy", "modern", "bright", "clean", "tidy", "large", "simple")
COUNTS = {2: "two", 3: "three", 4: "four"}
IGNORED = {"ceiling", "ceiling light", "curtain rod", "shower floor", "wall", "floor"}
PLURAL_NAMES = {"books"}  # already plural: no article, no count
COLORED = {"sofa", "armchair", "chair", "office chair", "door", "cabinet", "wardrobe", "dresser",
           "refrigerator", "desk", "dining table", "coffee table", "table", "bookshelf",
           "curtain", "trash can", "ottoman", "stool", "counter", "rug", "towel"}


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _plural(phrase: str) -> str:
    words = phrase.split()
    k = next((i - 1 for i, w in enumerate(words) if w in ("of", "with")), len(words) - 1)
    w = words[k]
    if w.endswith(("s", "x", "ch", "sh")):
        w += "es"
    elif w.endswith("f"):
        w = w[:-1] + "ves"
    elif w.endswith("y") and w[-2] not in "aeiou":
        w = w[:-1] + "ies"
    else:
        w += "s"
    words[k] = w
    return " ".join(words)


def visible_objects(prim_image: np.ndarray, names: list[str], instances: np.ndarray,
                    labelled: np.ndarray, *, min_pixels: int) -> list[tuple[str, float, int]]:
    """Objects ranked by visible area.

    Args:
        prim_image: (H, W) primitive index per pixel (-1 = nothing).
        names: caption name of every primitive.
        instances: (P,) instance id of every primitive.
        labelled: (P,) bool, whether a primitive has a ScanNet20 class (others count half).
        min_pixels: smallest area of a mentioned object.

    Returns:
        ``(name, score, count)`` sorted by decreasing score; ``count`` is the number of
        instances of that name with at least ``min_pixels / 4`` pixels.
    """
    idx, area = np.unique(prim_image[prim_image >= 0], return_counts=True)
    per_inst: dict[int, list] = {}
    for i, a in zip(idx, area):
        entry = per_inst.setdefault(int(instances[i]), [names[i], 0, bool(labelled[i])])
        entry[1] += int(a)
    by_name: dict[str, list] = {}
    for name, a, lab in per_inst.values():
        if name in IGNORED:
            continue
        entry = by_name.setdefault(name, [0.0, 0])
        entry[0] += a * (1.0 if lab else 0.5)
        entry[1] += a >= min_pixels / 4
    ranked = [(n, s, max(c, 1)) for n, (s, c) in by_name.items() if s >= min_pixels]
    return sorted(ranked, key=lambda t: (-t[1], t[0]))


def _phrase(name: str, count: int, color: str | None, rng: np.random.Generator) -> str:
    word = str(rng.choice(SYNONYMS.get(name, (name,))))
    if name in PLURAL_NAMES:
        return word if rng.random() < 0.5 else f"some {word}"
    if count > 1:
        lead = COUNTS.get(count, "several") if rng.random() < 0.6 else "some"
        return f"{lead} {_plural(word)}"
    if color is not None:
        word = f"{color} {word}"
    return _article(word)


def make_caption(objects: list[tuple[str, float, int]], room_type: str,
                 rng: np.random.Generator, *, colors: dict[str, str] | None = None,
                 wall_color: str = "white") -> str:
    """One caption for a view.

    Args:
        objects: ``visible_objects`` output.
        room_type: the room type of the scene.
        rng: the caption's random generator.
        colors: colour name per object name (used for an occasional adjective).
        wall_color: the colour name of the walls (for views that show no object).

    Returns:
        The caption, lower case, without a final period.
    """
    colors = colors or {}
    room = str(rng.choice(ROOM_WORDS[room_type]))
    if rng.random() < 0.05:  # a captioner's wrong guess of the room type
        room = str(rng.choice(ROOM_WORDS[str(rng.choice(GUESSED_ROOMS))]))
    chosen = objects[: int(rng.integers(2, 5))]
    kept = [o for o in chosen if rng.random() > 0.15] or chosen[:1]
    phrases = [_phrase(n, c, colors.get(n) if n in COLORED and rng.random() < 0.25 else None,
                       rng) for n, _, c in kept]
    if phrases and rng.random() < 0.08:  # a hallucinated object next to real ones
        phrases.append(_article(str(rng.choice(DISTRACTORS[room_type]))))
    if not phrases:
        return str(rng.choice([f"a {wall_color} wall in {_article(room)}",
                               f"a close up of a {wall_color} wall",
                               f"an empty corner of {_article(room)} with {wall_color} walls"]))
    objs = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    if rng.random() < 0.12:
        return str(rng.choice([f"a room with {objs}", f"an indoor scene with {objs}", objs]))
    a_room = _article(room)
    templates = (f"{a_room} with {objs}", f"a photo of {a_room} with {objs}",
                 f"{objs} in {a_room}", f"a view of {a_room} showing {objs}",
                 f"{_article(str(rng.choice(ADJECTIVES)))} {room} with {objs}")
    return templates[int(rng.integers(len(templates)))]
