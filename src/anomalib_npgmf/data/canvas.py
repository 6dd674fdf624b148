"""Drawing surface, ground-truth regions and the drawing helpers every generated scene shares.

Every drawing is done at 4x the output size and downsampled (anti-aliased edges), with numpy and OpenCV only.
"""

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


def _structural(canvas: Canvas, rng: np.random.Generator, defect: str | None) -> list[Region]:
    if defect == "scratch":
        return [_scratch(canvas, rng)]
    if defect == "contamination":
        return [_contamination(canvas, rng)]
    return []
