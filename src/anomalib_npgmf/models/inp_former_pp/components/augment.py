"""Few-shot augmentation of the official few-shot recipe, drawn on the fly.

The official few-shot script expands every shot image into 22 fixed versions (itself; rotations by +-pi/16, +-pi/8,
+-3pi/16, +-pi/4; translations by (+-0.2, +-0.2) and (+-0.1, +-0.1) of the half-size; a horizontal flip; greyscale;
rotations by 90, 180 and 270 degrees; reflection padding). Here each training image is replaced by one of those 22
versions chosen at random per step, so the datamodule stays unchanged (``n_shots`` images) and the expected data seen
per epoch is the same mix.
"""

import math

import torch
import torch.nn.functional as F  # noqa: N812

# Official order: -pi/4, -3pi/16, -pi/8, -pi/16, pi/16, pi/8, 3pi/16, pi/4.
ANGLES = tuple(step * math.pi / 16 for step in (-4, -3, -2, -1, 1, 2, 3, 4))
SHIFTS = ((0.2, 0.2), (-0.2, 0.2), (-0.2, -0.2), (0.2, -0.2), (0.1, 0.1), (-0.1, 0.1), (-0.1, -0.1), (0.1, -0.1))
GREY_WEIGHTS = (0.299, 0.587, 0.114)


def _affine(rotation: float = 0.0, shift: tuple[float, float] = (0.0, 0.0), flip: bool = False) -> list[list[float]]:
    cos, sin = math.cos(rotation), math.sin(rotation)
    sign = -1.0 if flip else 1.0
    return [[sign * cos, -sin, shift[0]], [sign * sin, cos, shift[1]]]


# One affine matrix per version; the greyscale version keeps the identity geometry.
VERSIONS = (
    [_affine()]
    + [_affine(rotation=angle) for angle in ANGLES]
    + [_affine(shift=shift) for shift in SHIFTS]
    + [_affine(flip=True), _affine()]
    + [_affine(rotation=k * math.pi / 2) for k in (1, 2, 3)]
)
GREY_VERSION = 18


def few_shot_augment(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each image of ``(B, 3, H, W)`` by a randomly chosen one of the 22 official versions."""
    choice = torch.randint(0, len(VERSIONS), (images.shape[0],), generator=generator)
    return apply_versions(images, choice)


def apply_versions(images: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
    """Apply version ``choice[i]`` (index into :data:`VERSIONS`) to image ``i``."""
    theta = torch.tensor(VERSIONS, dtype=images.dtype)[choice.cpu()].to(images.device)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    weights = torch.tensor(GREY_WEIGHTS, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    grey = (warped * weights).sum(dim=1, keepdim=True).expand_as(warped)
    is_grey = (choice == GREY_VERSION).to(images.device).view(-1, 1, 1, 1)
    return torch.where(is_grey, grey, warped)
