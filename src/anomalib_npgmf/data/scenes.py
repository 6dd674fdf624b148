"""Procedural scenes with content rules, and the defects that break them (for the synthetic LOCO-layout data).

Objects are placed *freely* inside their regions (random positions and sizes within a range), so no rule can be read
off one fixed position: a per-position model (PaDiM) cannot solve the logical anomalies by memorising pixels
(DESIGN.md §7). The rules mix local ones (a wrong colour, a part on the wrong side) with global ones (one part missing
or extra among several, a bar too short). ``screws`` is the hard case and held out: parts lie anywhere at any angle
and its rules are counts, lengths and kinds over the whole tray; no one tunes on it (tune on ``box``).

Every drawing is done at 4x the output size and downsampled (anti-aliased edges), with numpy and OpenCV only. The
scene frame is square; other aspect ratios (MVTec LOCO's 1600x1100 or 800x1600) stretch it, and images larger than
:data:`MAX_DRAW_SIDE` are drawn at that side and resized (supersampled less than 4x), which keeps a 1600 px image
about as cheap as a 512 px one. Sizes up to 512 px draw exactly as before.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

SUPERSAMPLE = 4
BASE = 128  # scene coordinates are in a 128x128 frame, scaled to the requested size
MAX_DRAW_SIDE = 512  # larger images are resized from a 512 px drawing (2048 px canvas; 4096 px took 0.66 s)
Size = int | tuple[int, int]  # a square side, or (width, height)


@dataclass
class Region:
    """One ground-truth region: an anomaly mask in scene coordinates and its defect name."""

    defect: str
    mask: np.ndarray  # bool, canvas resolution


@dataclass
class Canvas:
    """An RGB drawing surface in the 128-unit scene frame, supersampled."""

    size: int
    image: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.scale = self.size * SUPERSAMPLE / BASE
        side = self.size * SUPERSAMPLE
        self.image = np.zeros((side, side, 3), np.float32)

    def p(self, value: float) -> int:
        """Scene units -> canvas pixels."""
        return round(value * self.scale)

    def blank_mask(self) -> np.ndarray:
        return np.zeros(self.image.shape[:2], np.uint8)


@dataclass
class DefectSpec:
    """A defect kind as written to ``defects_config.json``."""

    name: str
    kind: str  # "logical" | "structural"
    pixel_value: int
    saturation_threshold: float
    relative_saturation: bool


# ---------------------------------------------------------------------------------------------------------- drawing
Colour = tuple[int, int, int]
ORANGE, GREEN, PURPLE = (235, 125, 35), (60, 170, 60), (150, 70, 180)
BLUE, RED, DARK = (45, 70, 200), (200, 50, 50), (85, 75, 65)
TRAY = (182, 172, 152)


def _circle(
    canvas: Canvas, mask: np.ndarray | None, centre: tuple[float, float], radius: float, colour: Colour
) -> None:
    c = (canvas.p(centre[0]), canvas.p(centre[1]))
    cv2.circle(canvas.image, c, canvas.p(radius), colour, -1, lineType=cv2.LINE_AA)
    if mask is not None:
        cv2.circle(mask, c, canvas.p(radius), 1, -1)


def _rect(canvas: Canvas, mask: np.ndarray | None, x0: float, y0: float, x1: float, y1: float, colour: Colour) -> None:
    cv2.rectangle(canvas.image, (canvas.p(x0), canvas.p(y0)), (canvas.p(x1), canvas.p(y1)), colour, -1)
    if mask is not None:
        cv2.rectangle(mask, (canvas.p(x0), canvas.p(y0)), (canvas.p(x1), canvas.p(y1)), 1, -1)


def _free_positions(
    rng: np.random.Generator, count: int, box: tuple[float, float, float, float], spacing: float
) -> list[tuple[float, float]]:
    """``count`` random points inside ``box`` (x0, y0, x1, y1), at least ``spacing`` apart (best effort)."""
    points: list[tuple[float, float]] = []
    for _ in range(count):
        for _attempt in range(200):
            candidate = (float(rng.uniform(box[0], box[2])), float(rng.uniform(box[1], box[3])))
            if all((candidate[0] - x) ** 2 + (candidate[1] - y) ** 2 >= spacing**2 for x, y in points):
                break
        points.append(candidate)
    return points


def _tray(canvas: Canvas, rng: np.random.Generator, dividers: list[tuple[float, float, float, float]]) -> None:
    tint = rng.normal(0, 4, 3)
    canvas.image[:] = np.array(TRAY, np.float32) + tint
    cv2.rectangle(canvas.image, (canvas.p(4), canvas.p(4)), (canvas.p(123), canvas.p(123)), DARK, canvas.p(2))
    for x0, y0, x1, y1 in dividers:
        cv2.line(canvas.image, (canvas.p(x0), canvas.p(y0)), (canvas.p(x1), canvas.p(y1)), DARK, canvas.p(2))


# ------------------------------------------------------------------------------------------------ structural defects
def _scratch(canvas: Canvas, rng: np.random.Generator) -> Region:
    mask = canvas.blank_mask()
    x0, y0 = rng.uniform(15, 113, 2)
    angle, length = rng.uniform(0, np.pi), rng.uniform(30, 55)
    x1, y1 = np.clip([x0 + length * np.cos(angle), y0 + length * np.sin(angle)], 8, 120)
    points = [(canvas.p(x0), canvas.p(y0)), (canvas.p(x1), canvas.p(y1))]
    cv2.line(canvas.image, *points, (40, 38, 36), max(1, canvas.p(1.2)), lineType=cv2.LINE_AA)
    cv2.line(mask, *points, 1, canvas.p(3))
    return Region("scratch", mask.astype(bool))


def _contamination(canvas: Canvas, rng: np.random.Generator) -> Region:
    mask = canvas.blank_mask()
    centre = (canvas.p(rng.uniform(14, 114)), canvas.p(rng.uniform(14, 114)))
    axes = (canvas.p(rng.uniform(4, 7)), canvas.p(rng.uniform(3, 6)))
    angle = float(rng.uniform(0, 180))
    cv2.ellipse(canvas.image, centre, axes, angle, 0, 360, (105, 95, 40), -1, lineType=cv2.LINE_AA)
    cv2.ellipse(mask, centre, axes, angle, 0, 360, 1, -1)
    return Region("contamination", mask.astype(bool))


# ------------------------------------------------------------------------------------------------------ box scene
BOX_DEFECTS = [
    DefectSpec("missing_circle", "logical", 241, 300.0, False),  # absolute: about one circle's area (px at 128)
    DefectSpec("extra_circle", "logical", 242, 1.0, True),
    DefectSpec("wrong_colour", "logical", 243, 1.0, True),
    DefectSpec("misplaced_circle", "logical", 244, 1.0, True),
    DefectSpec("short_bar", "logical", 245, 1.0, True),
    DefectSpec("scratch", "structural", 246, 1.0, True),
    DefectSpec("broken_bar", "structural", 247, 1.0, True),
    DefectSpec("contamination", "structural", 248, 1.0, True),
]


def draw_box(canvas: Canvas, rng: np.random.Generator, defect: str | None) -> list[Region]:
    """Tray with two compartments. Rules: exactly 2 orange circles on the left; on the right one blue bar of length
    40-56 and one green square."""
    _tray(canvas, rng, [(64, 4, 64, 123)])
    regions: list[Region] = []
    left = (16, 16, 52, 112)
    count = {"missing_circle": 1, "extra_circle": 3, "misplaced_circle": 1}.get(defect, 2)
    radius = float(rng.uniform(8, 10))
    for index, centre in enumerate(_free_positions(rng, count, left, spacing=2 * radius + 5)):
        wrong = defect == "wrong_colour" and index == 0
        extra = defect == "extra_circle" and index == 2
        mask = canvas.blank_mask() if wrong or extra else None
        _circle(canvas, mask, centre, radius, PURPLE if wrong else ORANGE)
        if mask is not None:
            regions.append(Region(defect, mask.astype(bool)))
    if defect == "missing_circle":  # LOCO marks where the missing part belongs: here, the whole compartment
        mask = canvas.blank_mask()
        cv2.rectangle(mask, (canvas.p(8), canvas.p(8)), (canvas.p(61), canvas.p(120)), 1, -1)
        regions.append(Region(defect, mask.astype(bool)))
    # right compartment: bar and square placed apart (bar on one half, square on the other, side chosen at random)
    bar_left = bool(rng.integers(2))
    bar_x = float(rng.uniform(72, 80) if bar_left else rng.uniform(96, 102))
    square_x = float(rng.uniform(95, 100) if bar_left else rng.uniform(72, 78))
    length = float(rng.uniform(16, 26) if defect == "short_bar" else rng.uniform(40, 56))
    bar_y = float(rng.uniform(14, 114 - length))
    bar_mask = canvas.blank_mask() if defect == "short_bar" else None
    _rect(canvas, bar_mask, bar_x, bar_y, bar_x + 9, bar_y + length, BLUE)
    if bar_mask is not None:
        regions.append(Region(defect, bar_mask.astype(bool)))
    side = float(rng.uniform(10, 12))
    square_y = float(rng.uniform(14, 112 - side))
    _rect(canvas, None, square_x, square_y, square_x + side, square_y + side, GREEN)
    if defect == "misplaced_circle":
        mask = canvas.blank_mask()
        free_y = square_y + side + 14 if square_y < 60 else square_y - 14
        _circle(canvas, mask, (square_x + side / 2, free_y), radius, ORANGE)
        regions.append(Region(defect, mask.astype(bool)))
    if defect == "broken_bar":
        mask = canvas.blank_mask()
        gap_y = bar_y + length * float(rng.uniform(0.35, 0.65))
        _rect(canvas, mask, bar_x - 1, gap_y, bar_x + 10, gap_y + 3, TRAY)
        regions.append(Region(defect, mask.astype(bool)))
    regions.extend(_structural(canvas, rng, defect))
    return regions


# ------------------------------------------------------------------------------------------------------ pins scene
PINS_DEFECTS = [
    DefectSpec("empty_cell", "logical", 231, 350.0, False),
    DefectSpec("double_pin", "logical", 232, 1.0, True),
    DefectSpec("wrong_colour", "logical", 233, 1.0, True),
    DefectSpec("oversized_pin", "logical", 234, 1.0, True),
    DefectSpec("missing_row_marker", "logical", 235, 120.0, False),
    DefectSpec("scratch", "structural", 236, 1.0, True),
    DefectSpec("broken_pin", "structural", 237, 1.0, True),
    DefectSpec("contamination", "structural", 238, 1.0, True),
]


def draw_pins(canvas: Canvas, rng: np.random.Generator, defect: str | None) -> list[Region]:
    """A 3x2 grid of cells, exactly one red pin (head radius 5-6) per cell at a free position; a blue marker bar
    under the grid. Rules: one pin per cell, all red, all the same size, the marker present."""
    _tray(canvas, rng, [(45, 4, 45, 100), (84, 4, 84, 100), (4, 52, 123, 52), (4, 100, 123, 100)])
    regions: list[Region] = []
    cells = [(x, y) for y in (4, 52) for x in (4, 45, 84)]
    odd = int(rng.integers(len(cells)))
    for index, (x, y) in enumerate(cells):
        box = (x + 11, y + 11, x + 30, y + 37)
        pins = 2 if defect == "double_pin" and index == odd else 1
        if defect == "empty_cell" and index == odd:
            mask = canvas.blank_mask()
            cv2.rectangle(mask, (canvas.p(x + 2), canvas.p(y + 2)), (canvas.p(x + 39), canvas.p(y + 46)), 1, -1)
            regions.append(Region(defect, mask.astype(bool)))
            continue
        for pin, centre in enumerate(_free_positions(rng, pins, box, spacing=13)):
            radius = float(rng.uniform(5, 6))
            special = index == odd and (
                (defect == "double_pin" and pin == 1) or defect in {"wrong_colour", "oversized_pin", "broken_pin"}
            )
            if defect == "oversized_pin" and special:
                radius = float(rng.uniform(9, 10))
            mask = canvas.blank_mask() if special else None
            _circle(canvas, mask, centre, radius, GREEN if defect == "wrong_colour" and special else RED)
            _circle(canvas, None, centre, radius * 0.35, (240, 210, 210))
            if defect == "broken_pin" and special:
                mask = canvas.blank_mask()
                _rect(
                    canvas, mask, centre[0] - radius - 1, centre[1] - 1, centre[0] + radius + 1, centre[1] + 1.5, TRAY
                )
            if mask is not None:
                regions.append(Region(defect, mask.astype(bool)))
    if defect == "missing_row_marker":
        mask = canvas.blank_mask()
        cv2.rectangle(mask, (canvas.p(10), canvas.p(104)), (canvas.p(118), canvas.p(120)), 1, -1)
        regions.append(Region(defect, mask.astype(bool)))
    else:
        marker_x = float(rng.uniform(14, 70))
        _rect(canvas, None, marker_x, 108, marker_x + 40, 115, BLUE)
    regions.extend(_structural(canvas, rng, defect))
    return regions


def _structural(canvas: Canvas, rng: np.random.Generator, defect: str | None) -> list[Region]:
    if defect == "scratch":
        return [_scratch(canvas, rng)]
    if defect == "contamination":
        return [_contamination(canvas, rng)]
    return []


# ---------------------------------------------------------------------------------------------------- screws scene
SCREWS_DEFECTS = [
    DefectSpec("missing_part", "logical", 221, 120.0, False),  # absolute: about one part's area (px at 128)
    DefectSpec("extra_part", "logical", 222, 1.0, True),
    DefectSpec("wrong_length", "logical", 223, 1.0, True),
    DefectSpec("wrong_kind", "logical", 224, 1.0, True),
    DefectSpec("wrong_colour", "logical", 225, 1.0, True),
    DefectSpec("scratch", "structural", 226, 1.0, True),
    DefectSpec("broken_part", "structural", 227, 1.0, True),
    DefectSpec("contamination", "structural", 228, 1.0, True),
]
SCREWS_COUNTS = {"long_bolt": 2, "short_bolt": 2, "washer": 2, "nut": 2}  # the count rule of a normal tray
BOLT_LENGTHS = {"long_bolt": (36.0, 42.0), "short_bolt": (17.0, 22.0)}  # the length rule (scene units, head included)
ODD_LENGTHS = ((26.0, 30.0), (50.0, 55.0))  # a wrong_length bolt: between the two kinds, or far too long
STEEL, BRASS = (105, 110, 122), (205, 160, 55)
SCREWS_AREA = (10.0, 10.0, 118.0, 118.0)  # where parts may lie (inside the tray's rim)
HEAD_HALF_WIDTH, SHAFT_HALF_WIDTH, HEAD_LENGTH, PART_GAP = 3.6, 1.7, 4.5, 2.5


@dataclass
class Part:
    """One loose part of the screws tray: its kind, pose and what a defect changed about it."""

    kind: str  # "long_bolt" | "short_bolt" | "washer" | "nut"
    x: float = 0.0
    y: float = 0.0
    angle: float = 0.0  # radians
    length: float = 0.0  # bolts: head to tip; washers and nuts: 0
    radius: float = 0.0  # washers and nuts: outer radius; bolts: 0
    colour: tuple[float, float, float] = STEEL
    broken: bool = False
    odd: bool = False  # the part a defect region is drawn around

    def axis(self) -> list[tuple[float, float]]:
        """Points along the part's axis (one for a round part), for overlap tests."""
        if not self.length:
            return [(self.x, self.y)]
        steps = max(2, int(self.length // 2))
        dx, dy = np.cos(self.angle), np.sin(self.angle)
        return [(self.x + dx * t, self.y + dy * t) for t in np.linspace(-self.length / 2, self.length / 2, steps)]

    def reach(self) -> float:
        """Half-width of the part around its axis."""
        return HEAD_HALF_WIDTH if self.length else self.radius


def _fits(part: Part, placed: list[Part]) -> bool:
    x0, y0, x1, y1 = SCREWS_AREA
    points = np.array(part.axis())
    reach = part.reach()
    if points.min(0)[0] - reach < x0 or points.min(0)[1] - reach < y0:
        return False
    if points.max(0)[0] + reach > x1 or points.max(0)[1] + reach > y1:
        return False
    for other in placed:
        distances = np.linalg.norm(points[:, None, :] - np.array(other.axis())[None, :, :], axis=-1)
        if distances.min() < reach + other.reach() + PART_GAP:
            return False
    return True


def _place(rng: np.random.Generator, parts: list[Part]) -> None:
    """Random non-overlapping positions and angles, largest parts first; restarts from scratch if the tray jams."""
    order = sorted(range(len(parts)), key=lambda i: -(parts[i].length or 2 * parts[i].radius))
    for _restart in range(50):
        placed: list[Part] = []
        for index in order:
            part = parts[index]
            for _attempt in range(300):
                part.x, part.y = (float(v) for v in rng.uniform(SCREWS_AREA[:2], SCREWS_AREA[2:]))
                part.angle = float(rng.uniform(0, 2 * np.pi))
                if _fits(part, placed):
                    placed.append(part)
                    break
            else:
                break
        if len(placed) == len(parts):
            return
    msg = "internal error: could not place the screws tray's parts without overlap"
    raise RuntimeError(msg)


def _new_part(rng: np.random.Generator, kind: str) -> Part:
    if kind in BOLT_LENGTHS:
        return Part(kind, length=float(rng.uniform(*BOLT_LENGTHS[kind])))
    return Part(kind, radius=float(rng.uniform(5.0, 6.0)))


def plan_screws(rng: np.random.Generator, defect: str | None) -> list[Part]:
    """The parts of one screws tray (kinds, poses, colours), with ``defect`` applied to one of them."""
    kinds = [kind for kind, count in SCREWS_COUNTS.items() for _ in range(count)]
    odd = len(kinds)  # extra_part: the appended part
    if defect == "missing_part":
        kinds.pop(int(rng.integers(len(kinds))))
    elif defect == "extra_part":
        kinds.append(kinds[int(rng.integers(len(kinds)))])
    elif defect == "wrong_kind":  # one part becomes another kind: same total, wrong count per kind
        odd = int(rng.integers(len(kinds)))
        others = [kind for kind in SCREWS_COUNTS if kind != kinds[odd]]
        kinds[odd] = others[int(rng.integers(len(others)))]
    parts = [_new_part(rng, kind) for kind in kinds]
    bolts = [part for part in parts if part.length]
    if defect in {"extra_part", "wrong_kind"}:
        parts[odd].odd = True
    elif defect == "wrong_length":
        bolt = bolts[int(rng.integers(len(bolts)))]
        bolt.length, bolt.odd = float(rng.uniform(*ODD_LENGTHS[int(rng.integers(2))])), True
    elif defect == "wrong_colour":
        part = parts[int(rng.integers(len(parts)))]
        part.colour, part.odd = BRASS, True
    elif defect == "broken_part":
        bolts[int(rng.integers(len(bolts)))].broken = True
    for part in parts:
        shade = float(rng.uniform(-8, 8))
        part.colour = (part.colour[0] + shade, part.colour[1] + shade, part.colour[2] + shade)
    _place(rng, parts)
    return parts


def screws_violations(parts: list[Part]) -> set[str]:
    """The rules a tray breaks, named by the defect that breaks each (empty for a normal tray).

    Rules: 8 parts; 2 long bolts, 2 short bolts, 2 washers, 2 nuts; each bolt's length in its kind's range; all
    steel; nothing broken. A wrong total is reported as ``missing_part`` / ``extra_part`` only (the per-kind counts
    are then wrong too).
    """
    broken: set[str] = set()
    expected = sum(SCREWS_COUNTS.values())
    if len(parts) != expected:
        broken.add("missing_part" if len(parts) < expected else "extra_part")
    elif any(sum(part.kind == kind for part in parts) != count for kind, count in SCREWS_COUNTS.items()):
        broken.add("wrong_kind")
    if any(p.length and not BOLT_LENGTHS[p.kind][0] <= p.length <= BOLT_LENGTHS[p.kind][1] for p in parts):
        broken.add("wrong_length")
    if any(part.colour[0] > part.colour[2] for part in parts):  # steel is bluish grey, brass yellow
        broken.add("wrong_colour")
    if any(part.broken for part in parts):
        broken.add("broken_part")
    return broken


def _polygon(canvas: Canvas, mask: np.ndarray | None, points: np.ndarray, colour: tuple[float, ...]) -> None:
    pixels = np.round(points * canvas.scale).astype(np.int32)
    cv2.fillConvexPoly(canvas.image, pixels, colour, lineType=cv2.LINE_AA)
    if mask is not None:
        cv2.fillConvexPoly(mask, pixels, 1)


def _oriented_rect(part: Part, start: float, stop: float, half_width: float) -> np.ndarray:
    """Corners of the rectangle from ``start`` to ``stop`` along a bolt's axis (0 = head end), ``half_width`` wide."""
    dx, dy = np.cos(part.angle), np.sin(part.angle)
    head = np.array([part.x - dx * part.length / 2, part.y - dy * part.length / 2])
    along, across = np.array([dx, dy]), np.array([-dy, dx])
    return np.array(
        [
            head + along * start + across * half_width,
            head + along * stop + across * half_width,
            head + along * stop - across * half_width,
            head + along * start - across * half_width,
        ]
    )


def _draw_part(canvas: Canvas, mask: np.ndarray | None, part: Part, background: tuple[float, ...]) -> None:
    dark = tuple(channel * 0.72 for channel in part.colour)
    if part.length:  # a bolt seen from the side: hex head, threaded shaft
        _polygon(canvas, mask, _oriented_rect(part, 0.0, HEAD_LENGTH, HEAD_HALF_WIDTH), part.colour)
        _polygon(canvas, mask, _oriented_rect(part, HEAD_LENGTH, part.length, SHAFT_HALF_WIDTH), part.colour)
        _polygon(canvas, None, _oriented_rect(part, 0.0, HEAD_LENGTH, 0.6), dark)  # head edge
        for thread in np.arange(HEAD_LENGTH + 3.0, part.length - 0.5, 1.6):
            _polygon(canvas, None, _oriented_rect(part, thread, thread + 0.5, SHAFT_HALF_WIDTH), dark)
        return
    if part.kind == "washer":
        _circle(canvas, mask, (part.x, part.y), part.radius, part.colour)
        _circle(canvas, None, (part.x, part.y), part.radius * 0.62, dark)
    else:  # nut: a hexagon with a bore
        turns = part.angle + np.arange(6) * np.pi / 3
        hexagon = np.stack([part.x + part.radius * np.cos(turns), part.y + part.radius * np.sin(turns)], axis=1)
        _polygon(canvas, mask, hexagon, part.colour)
    _circle(canvas, None, (part.x, part.y), part.radius * 0.4, background)


def draw_screws(canvas: Canvas, rng: np.random.Generator, defect: str | None) -> list[Region]:
    """An open tray of loose parts at any position and angle, like MVTec LOCO's screw bag: exactly 2 long bolts
    (36-42 units), 2 short bolts (17-22), 2 washers and 2 nuts, all steel (rules in :func:`screws_violations`).

    The hard case, and **never used for tuning** (tune on ``box``; report on ``pins`` and this scene): no part has a
    place, so a per-position or per-cell statistic cannot see a missing or extra part, a swapped kind or a bolt of the
    wrong length; only a count over the whole tray can. A missing part's region is the whole tray interior (where it
    could have been, as LOCO marks it), saturated at about one part's area.
    """
    _tray(canvas, rng, [])
    background = tuple(float(v) for v in canvas.image[canvas.p(64), canvas.p(64)])
    regions: list[Region] = []
    for part in plan_screws(rng, defect):
        mask = canvas.blank_mask() if part.odd else None
        _draw_part(canvas, mask, part, background)
        if mask is not None:
            regions.append(Region(str(defect), mask.astype(bool)))
        if part.broken:
            mask = canvas.blank_mask()
            gap = part.length * float(rng.uniform(0.45, 0.7))
            _polygon(canvas, mask, _oriented_rect(part, gap, gap + 2.5, HEAD_HALF_WIDTH), background)
            regions.append(Region("broken_part", mask.astype(bool)))
    if defect == "missing_part":
        mask = canvas.blank_mask()
        x0, y0, x1, y1 = (canvas.p(v) for v in SCREWS_AREA)
        cv2.rectangle(mask, (x0, y0), (x1, y1), 1, -1)
        regions.append(Region(defect, mask.astype(bool)))
    regions.extend(_structural(canvas, rng, defect))
    return regions


@dataclass(frozen=True)
class Scene:
    """A scene layout: its drawing function and its defect kinds."""

    draw: Callable[[Canvas, np.random.Generator, str | None], list[Region]]
    defects: list[DefectSpec]


SCENES: dict[str, Scene] = {
    "box": Scene(draw_box, BOX_DEFECTS),
    "pins": Scene(draw_pins, PINS_DEFECTS),
    "screws": Scene(draw_screws, SCREWS_DEFECTS),  # held out: never used for tuning
}


def width_height(size: Size) -> tuple[int, int]:
    """(width, height) of a square side or a (width, height) pair."""
    if isinstance(size, int):
        return size, size
    width, height = size
    return int(width), int(height)


def render(
    scene: str, size: Size, rng: np.random.Generator, defect: str | None, structural_regions: int = 1
) -> tuple[np.ndarray, list[Region]]:
    """Draw one image (uint8 RGB, ``size`` = side or (width, height)) and its defect regions (bool masks, same size).

    ``structural_regions`` > 1 draws that many separate scratches or contaminations (one region each), as real LOCO
    images with several ground-truth files; 1 keeps the random stream of earlier versions (same bytes).
    """
    width, height = width_height(size)
    canvas = Canvas(min(max(width, height), MAX_DRAW_SIDE))
    regions = SCENES[scene].draw(canvas, rng, defect)
    for _ in range(structural_regions - 1):
        regions.extend(_structural(canvas, rng, defect))
    size = (width, height)
    image = cv2.resize(canvas.image, size, interpolation=cv2.INTER_AREA)
    image += float(rng.normal(0, 5))  # lighting
    image += rng.normal(0, 2.0, image.shape).astype(np.float32)  # sensor noise
    image = np.clip(image, 0, 255).astype(np.uint8)
    small = [
        Region(r.defect, cv2.resize(r.mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0)
        for r in regions
    ]
    return image, [r for r in small if r.mask.any()]
