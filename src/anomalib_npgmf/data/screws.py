"""The held-out ``screws`` scene (issue 18), the hard case: parts lie anywhere at any angle and its rules are
counts, lengths and kinds over the whole tray, so no per-position or per-cell statistic can see a missing or extra
part. Never used for tuning: tune on ``box``.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from .canvas import (
    Canvas,
    DefectSpec,
    Region,
    _circle,
    _structural,
    _tray,
)

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
