"""Part-level pseudo-anomalies of normal images, and the invariant (and part) prior's weight that separates them best.

Issue 18: which image-level prior is the stronger differs by scene (one with parts in fixed places wants the global
prior, one with loose parts the invariant one), and no fixed weight serves both. Without anomalous images to tune on,
a stand-in is made from each held-out normal image: one of its parts removed (painted in the background colour) and
one duplicated (pasted where nothing lies). The invariant prior's weight is then the one whose image-level score
``global + weight x invariant`` (both normalised on the normal images) ranks the stand-ins above the normals best,
provided it beats the configured weight by more than the sampling error of that difference (``switch_weight``).
Square patches pasted, erased or recoloured were tried first and are too easy (both priors separate them at
0.88-0.99, so they cannot tell the weights apart): see the model README. The part prior's weight is chosen the same
way after it (``choose_part_weight``): ``global + invariant-weight x invariant + weight x part``, against
``part_weight``, where the other priors' spread on the normals can bury the part counts (screws at 256 px).

A part is a connected blob of pixels far from the image's median colour (its background on LOCO-like scenes), large
enough not to be texture noise and smaller than half the image on both sides (not a frame or a wall). Images are
read as the datamodule gives them (RGB in [0, 1], before the pre-processor's normalisation).
"""

from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage

from anomalib_npgmf.metrics import paired_auroc_difference, rank_auroc

PART_CONTRAST = 0.25  # RGB distance (0-1 scale) from the median colour that makes a pixel part of a part
PART_MIN_AREA = 6  # pixels; smaller blobs are texture noise
PLACEMENT_TRIES = 50  # random places tried for a duplicate before the image gives none
CANDIDATE_WEIGHTS = (0.5, 1.0, 2.0, 4.0, 8.0)  # on the scale of fusion_weights, as invariant_weight
# the part prior's (choose_part_weight): the invariant's, and 16 on top because the part prior alone separates more
# than the fused score at 8 (model README, screws at 256 px); 32 and 64 since 2026-12-07, because on box (the scene
# tuned on) every run that chose 16 still separated its pseudo-anomalies better at 16 than at 8
PART_CANDIDATE_WEIGHTS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
# how many standard errors of the paired AUROC difference the best weight must lead the configured one by: the
# one-standard-error rule (Breiman et al., CART, 1984), with the configured weight as the default kept on a near-tie
SWITCH_STANDARD_ERRORS = 1.0


def median_colour(image: torch.Tensor) -> torch.Tensor:
    """(C, 1, 1) per-channel median of one (C, H, W) image: its background colour on LOCO-like scenes."""
    return image.flatten(1).median(dim=1).values[:, None, None]


def image_parts(image: torch.Tensor) -> tuple[np.ndarray, list[tuple[int, tuple[slice, slice]]], torch.Tensor]:
    """(labelled foreground, [(label, bounding box)] of its parts, median colour (C, 1, 1)) of one (C, H, W) image."""
    median = median_colour(image)
    labels, _ = ndimage.label(((image - median).norm(dim=0) > PART_CONTRAST).cpu().numpy())
    height, width = labels.shape
    parts = [
        (label, box)
        for label, box in enumerate(ndimage.find_objects(labels), start=1)
        if box is not None
        and (labels[box] == label).sum() >= PART_MIN_AREA
        and box[0].stop - box[0].start < height // 2
        and box[1].stop - box[1].start < width // 2
    ]
    return labels, parts, median


def part_anomalies(image: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """``{kind: altered image}`` of one (C, H, W) image for each kind it can give: ``"removed"``, a random part
    painted over; ``"duplicated"``, a random part copied where nothing lies. An image without a part gives none; one
    without room for a copy gives no duplicate. Seeded, so every DDP rank makes the same ones from the same image."""
    labels, parts, median = image_parts(image)
    if not parts:
        return {}
    rng = np.random.default_rng(seed)
    made = {}
    label, box = parts[rng.integers(len(parts))]
    mask = torch.from_numpy(ndimage.binary_dilation(labels == label, iterations=1)).to(image.device)
    removed = image.clone()
    removed[:, mask] = median[:, 0]
    made["removed"] = removed
    label, box = parts[rng.integers(len(parts))]
    shape = torch.from_numpy(labels[box] == label).to(image.device)
    occupied = ndimage.binary_dilation(labels > 0, iterations=2)
    rows, columns = box[0].stop - box[0].start, box[1].stop - box[1].start
    for _ in range(PLACEMENT_TRIES):
        top, left = rng.integers(0, labels.shape[0] - rows), rng.integers(0, labels.shape[1] - columns)
        if not occupied[top : top + rows, left : left + columns].any():
            duplicated = image.clone()
            duplicated[:, top : top + rows, left : left + columns][:, shape] = image[:, box[0], box[1]][:, shape]
            made["duplicated"] = duplicated
            break
    return made


def weight_separations(
    global_distances: torch.Tensor,
    invariant_distances: torch.Tensor,
    is_pseudo_anomaly: torch.Tensor,
    weights: tuple[float, ...] = CANDIDATE_WEIGHTS,
) -> dict[float, float]:
    """``{weight: AUROC}`` of ``global + weight x invariant`` (normalised distances) at telling the pseudo-anomalies
    from the normals."""
    return {
        weight: rank_auroc(weighted_score(global_distances, invariant_distances, weight), is_pseudo_anomaly)
        for weight in weights
    }


def weighted_score(global_distances: torch.Tensor, invariant_distances: torch.Tensor, weight: float) -> torch.Tensor:
    """``global + weight x invariant`` in float64: the image-level score each candidate weight would give."""
    return global_distances.double() + weight * invariant_distances.double()


def best_weight(separations: dict[float, float], fallback: float) -> float:
    """The weight with the largest AUROC; ties (to 1e-6, below one rank swap of any set this small) go to the one
    nearest ``fallback`` on a log scale, so a set that cannot tell the weights apart keeps the configured one."""
    return max(separations, key=lambda weight: (round(separations[weight], 6), -abs(np.log(weight / fallback))))


def switch_weight(
    global_distances: torch.Tensor,
    invariant_distances: torch.Tensor,
    is_pseudo_anomaly: torch.Tensor,
    separations: dict[float, float],
    fallback: float,
) -> tuple[float, float, float]:
    """(weight to use, AUROC lead of the best weight over ``fallback``, that lead's standard error).

    The best weight (``best_weight``) replaces the configured one only when its pseudo-anomaly AUROC leads by more than
    ``SWITCH_STANDARD_ERRORS`` paired standard errors (``metrics.paired_auroc_difference``): on a few dozen images
    candidates 0.01-0.02 apart are a coin toss, and following them cost pins 0.05 logical AUROC at 256 px (model
    README). With fewer than two images of either kind the error cannot be estimated and the configured weight stays.
    """
    best = best_weight(separations, fallback)
    if best == fallback:
        return fallback, 0.0, 0.0
    labels = is_pseudo_anomaly.bool()
    if int(labels.sum()) < 2 or int((~labels).sum()) < 2:
        return fallback, float("nan"), float("nan")
    lead, error = paired_auroc_difference(
        weighted_score(global_distances, invariant_distances, best),
        weighted_score(global_distances, invariant_distances, fallback),
        labels,
    )
    return (best if lead > SWITCH_STANDARD_ERRORS * error else fallback), lead, error


class WeightChoice(NamedTuple):
    """What :func:`choose_weight` decided, and on what: the weight to use, each candidate's pseudo-anomaly AUROC,
    and the best candidate's lead over the configured weight with that lead's standard error."""

    weight: float
    separations: dict[float, float]
    lead: float
    error: float


def choose_weight(
    base: torch.Tensor,
    added: torch.Tensor,
    is_pseudo_anomaly: torch.Tensor,
    candidates: tuple[float, ...],
    fallback: float,
) -> WeightChoice | None:
    """The weight of ``added`` in ``base + weight x added`` that the switch rule (``switch_weight``) picks from
    ``candidates`` against ``fallback``; ``None`` when the rows hold no pseudo-anomaly or no normal (nothing to rank).
    Sets nothing: fitting sets what it returns, and scripts check a saved run's choice against it."""
    anomalous = int(is_pseudo_anomaly.sum())
    if anomalous in (0, len(is_pseudo_anomaly)):
        return None
    separations = weight_separations(base, added, is_pseudo_anomaly, candidates)
    weight, lead, error = switch_weight(base, added, is_pseudo_anomaly, separations, fallback)
    return WeightChoice(weight, separations, lead, error)
