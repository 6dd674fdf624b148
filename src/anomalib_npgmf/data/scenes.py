"""Procedural scenes with content rules, and the defects that break them (for the synthetic LOCO-layout data).

Objects are placed *freely* inside their regions (random positions and sizes within a range), so no rule can be read
off one fixed position: a per-position model (PaDiM) cannot solve the logical anomalies by memorising pixels.
The rules mix local ones (a wrong colour, a part on the wrong side) with global ones (one part missing or extra
among several, a bar too short). ``screws`` is the hard case and held out: parts lie anywhere at any angle
and its rules are counts, lengths and kinds over the whole tray; no one tunes on it (tune on ``box``).

Every drawing is done at 4x the output size and downsampled (anti-aliased edges), with numpy and OpenCV only. The
scene frame is square; other aspect ratios (MVTec LOCO's 1600x1100 or 800x1600) stretch it, and images larger than
:data:`MAX_DRAW_SIDE` are drawn at that side and resized (supersampled less than 4x), which keeps a 1600 px image
about as cheap as a 512 px one. Sizes up to 512 px draw exactly as before.
"""

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from .canvas import (
    BLUE,
    GREEN,
    MAX_DRAW_SIDE,
    ORANGE,
    PURPLE,
    RED,
    TRAY,
    Canvas,
    DefectSpec,
    Region,
    Size,
    _circle,
    _free_positions,
    _rect,
    _structural,
    _tray,
)
from .screws import SCREWS_DEFECTS, draw_screws

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
