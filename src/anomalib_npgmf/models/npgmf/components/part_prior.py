"""Part normality prior [ours, issue 18]: a Gaussian over how many parts of each kind an image holds.

Why: on scenes whose parts lie anywhere at any angle (``screws``), the rules are counts, lengths and kinds of loose
parts. Every feature statistic Npgmf had (per position, per region, pooled over the image, averaged over flips)
stayed below 0.80 logical image AUROC there, while the no-network ``probe_parts`` baseline, which counts parts, reached
0.86 (``benchmarking/part_probe.py``). This is that baseline as a part of the model, in operations an exported graph
holds:

- a pixel belongs to a part when its colour is more than ``contrast`` (RGB in [0, 1]) from the image's median colour;
- parts are the 8-connected components of those pixels, labelled by the largest pixel index in each, found with
  max-pooling, a scatter-max and gathers (:func:`component_labels`; no connected-components operator is needed);
- each part's area, its coordinates' second moments and its summed colour are gathered by one scatter-add over the
  component labels, giving log area, log length, log width (from the moments' eigenvalues) and mean colour;
- parts smaller than ``min_area`` are noise; the training normals' parts are clustered into ``kinds`` (k-means) by
  their shape alone (log area, length, width): colour is what a kind is checked for, not what makes one;
- each kind keeps its parts' spread per feature, and a part is as typical as its distance to the nearest kind in that
  kind's own spread;
- with ``in_map`` the parts are painted into an anomaly map (:meth:`part_map`), optionally with each part's distance
  scaled within its kind (``kind_scaled``);
- an image is the vector (parts per kind among its ``max_parts`` largest, number of parts, the least typical part's
  distance), scored by the Mahalanobis distance to the normal images' Ledoit-Wolf Gaussian of those vectors.

Why shapes and per-kind spreads (issue 18's per-defect-kind analysis on ``screws``; the prior alone, 128 px, data
seeds 0 / 1, ``benchmarks/accuracy/part_prior_alone.py``): clustered on colour too, k-means split kinds by their
parts' ±8 shade and merged long and short bolts, so a swapped kind or an odd bolt hid inside some kind (wrong-kind /
wrong-length AUROC 0.65 / 0.73; 0.98 / 1.00 by shape). A kind's own spread makes a bolt between the two bolt lengths
many spreads away from both (``tests/models/npgmf/test_part_prior.py`` shows one spread for all kinds hiding it).

The median-colour cut assumes parts on a plain background (true of the generated scenes, of MVTec LOCO's screw bag
and pushpins only in part): the prior is off in both variants and on in the CPU demo config only. Images arrive
pre-processed; they are mapped back to RGB with anomalib's default ImageNet normalisation (Npgmf's pre-processor),
which a custom pre-processor must keep.
"""

import math
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch.nn import functional as F  # noqa: N812

from .global_prior import (
    CategoryGaussians,
    checked_category_index,
    ledoit_wolf_covariance,
    mahalanobis_squared,
    precision_from_covariance,
)

PART_FEATURES = 6  # log area, log length, log width, mean R, G, B
SHAPE_FEATURES = 3  # the first three: what kinds are clustered on
SPREAD_FLOOR = 0.05  # smallest spread of a kind per feature, in units of all parts' spread (a kind of identical parts)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # anomalib's default pre-processor normalises with these
IMAGENET_STD = (0.229, 0.224, 0.225)
SMALLEST_VARIANCE = 1e-3  # floor of a part's coordinate variance along an axis (a one-pixel-wide line), px²
TERRITORY_REACH = 4  # px at 128x128 (scaled with the image's side): how far a kind's territory reaches past its parts
DISTANCE_SPREAD_FLOOR = 0.1  # smallest spread of a kind's training parts' distances (in spreads), for kind_scaled


def to_rgb(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] from images normalised by anomalib's default pre-processor."""
    mean = images.new_tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).reshape(1, 3, 1, 1)
    return images * std + mean


def median_colour(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, 1, 1) per-channel median of each image (the mean of the two middle values for an even count, as
    numpy's): the background colour of a scene of parts on a plain ground."""
    values = rgb.flatten(2).sort(dim=2).values
    count = values.shape[2]
    middle = values[..., (count - 1) // 2 : count // 2 + 1].mean(dim=2)
    return middle[..., None, None]


def component_labels(foreground: torch.Tensor, rounds: int | None = None) -> torch.Tensor:
    """(B, H, W) label of each pixel of a (B, H, W) boolean mask: 1 + the largest flat pixel index of its 8-connected
    component (0 for the background).

    Labels start as each pixel's own 1 + index and only grow, always to a label of the same component. Each round
    (1) takes the largest label among the 3x3 neighbours (max-pooling inside the mask), (2) hooks: the pixel a label
    names takes the largest neighbour label of every pixel that holds it (a scatter-max), (3) jumps twice: every pixel
    takes the label its label's pixel holds (a gather). Plain max-pooling needs as many rounds as the longest path in a
    part (500 on a generated screw bag's outline); hooking and jumping merge whole trees per round: 5 rounds on every
    generated scene at 128 px; a serpentine through a whole image needs 5 / 6 / 7 at 64 / 128 / 256 px, one more per
    doubling (``tests/models/npgmf/test_part_prior.py``). ``rounds`` defaults to log2 of the longer side plus 2 (9 at
    128 px): three rounds above every shape measured.
    """
    batch, height, width = foreground.shape
    rounds = math.ceil(math.log2(max(height, width))) + 2 if rounds is None else int(rounds)
    mask = foreground.reshape(batch, -1).float()
    index = torch.arange(1, height * width + 1, device=foreground.device, dtype=torch.float32)
    labels = index[None] * mask
    own = (index.long() - 1)[None].expand(batch, -1)  # background pixels name themselves: no write conflicts
    for _ in range(rounds):
        neighbours = F.max_pool2d(labels.reshape(batch, 1, height, width), 3, stride=1, padding=1).reshape(batch, -1)
        neighbours = neighbours * mask
        named = torch.where(mask > 0, labels.long() - 1, own)  # the pixel each label names
        labels = torch.maximum(labels.scatter_reduce(1, named, neighbours, reduce="amax"), neighbours)
        for _ in range(2):
            labels = labels.gather(1, torch.where(mask > 0, labels.long() - 1, own)) * mask
    return labels.reshape(batch, height, width)


def part_descriptors(rgb: torch.Tensor, labels: torch.Tensor, min_area: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, S, 6) descriptors of every label slot and (B, S) which slots are parts (S = H·W + 1; slot ``l`` holds the
    component labelled ``l``): log area, log of 4x the square roots of the coordinates' covariance eigenvalues (length
    and width), mean colour."""
    batch, _, height, width = rgb.shape
    ys, xs = torch.meshgrid(
        torch.arange(height, device=rgb.device, dtype=rgb.dtype),
        torch.arange(width, device=rgb.device, dtype=rgb.dtype),
        indexing="ij",
    )
    ys, xs = ys.reshape(1, -1).expand(batch, -1), xs.reshape(1, -1).expand(batch, -1)
    colours = rgb.flatten(2).transpose(1, 2)  # (B, HW, 3)
    per_pixel = torch.cat(
        [
            torch.ones_like(xs)[..., None],
            xs[..., None],
            ys[..., None],
            (xs * xs)[..., None],
            (ys * ys)[..., None],
            (xs * ys)[..., None],
            colours,
        ],
        dim=2,
    )  # (B, HW, 9)
    slots = labels.reshape(batch, -1).long()
    sums = per_pixel.new_zeros(batch, height * width + 1, per_pixel.shape[2])
    sums = sums.scatter_add(1, slots[..., None].expand(-1, -1, per_pixel.shape[2]), per_pixel)
    area = sums[..., 0]
    count = area.clamp_min(1.0)
    mean_x, mean_y = sums[..., 1] / count, sums[..., 2] / count
    dof = (area - 1.0).clamp_min(1.0)  # numpy's unbiased covariance
    var_x = (sums[..., 3] - count * mean_x * mean_x) / dof
    var_y = (sums[..., 4] - count * mean_y * mean_y) / dof
    cov_xy = (sums[..., 5] - count * mean_x * mean_y) / dof
    half_trace = (var_x + var_y) / 2
    spread = torch.sqrt(((var_x - var_y) / 2) ** 2 + cov_xy**2)
    tiny = area <= 2  # too few pixels for a covariance: a unit one
    major = torch.where(tiny, torch.ones_like(area), half_trace + spread).clamp_min(SMALLEST_VARIANCE)
    minor = torch.where(tiny, torch.ones_like(area), half_trace - spread).clamp_min(SMALLEST_VARIANCE)
    descriptors = torch.cat(
        [
            torch.log(count)[..., None],
            torch.log(4 * torch.sqrt(major))[..., None],
            torch.log(4 * torch.sqrt(minor))[..., None],
            sums[..., 6:] / count[..., None],
        ],
        dim=2,
    )
    not_background = torch.arange(area.shape[1], device=area.device) > 0  # slot 0 is the background
    valid = (area >= min_area) & not_background
    return descriptors, valid


def cut_parts(rgb: torch.Tensor, contrast: float, min_area: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The one part cut (the prior's, and the ``probe_parts`` baseline's): (B, H, W) component labels, (B, S, 6)
    descriptors and (B, S) validity of (B, 3, H, W) RGB images in [0, 1], parts being the 8-connected pixels more than
    ``contrast`` from the image's median colour (:func:`component_labels`, :func:`part_descriptors`); the
    descriptors come in ``rgb``'s dtype."""
    foreground = (rgb - median_colour(rgb)).norm(dim=1) > contrast
    labels = component_labels(foreground)
    return (labels, *part_descriptors(rgb, labels, min_area))


class PartNormalityPrior(CategoryGaussians):
    """Mahalanobis distance of an image's part counts per kind to the normal images' Gaussian (one per category).

    Args:
        input_size: (H, W) of the images it reads (sets the default smallest part).
        kinds: Part kinds (k-means clusters of the training normals' parts, by shape).
        contrast: RGB distance (0-1 scale) from the median colour that makes a pixel part of a part.
        min_area: Smallest part in pixels; ``None``: 4 px at 128x128, scaled with the image's area.
        max_parts: Parts per image sorted into kinds (the largest; the number of parts counts all of them).
        num_categories: Gaussians held.
        seed: Seeds k-means.
        in_map: Also paint the parts into an anomaly map (:meth:`part_map`); fits each kind's territory.
        kind_scaled: Paint a part's distance to its kind standardised among that kind's training parts (needs
            ``in_map``; :meth:`fit_kind_distances`), not as it is.
    """

    def __init__(
        self,
        input_size: Sequence[int],
        kinds: int = 8,
        contrast: float = 40 / 255,
        min_area: int | None = None,
        max_parts: int = 64,
        num_categories: int = 1,
        seed: int = 0,
        in_map: bool = False,
        kind_scaled: bool = False,
    ) -> None:
        height, width = (int(side) for side in input_size)
        if min_area is None:
            min_area = max(1, round(4 * height * width / 128**2))
        if kinds < 1 or not 0 < contrast < 1 or min_area < 1 or max_parts < 1:
            msg = (
                "the part prior needs part_kinds >= 1, 0 < part_contrast < 1, part_min_area >= 1 and max_parts >= 1, "
                f"got {kinds}, {contrast}, {min_area}, {max_parts}"
            )
            raise ValueError(msg)
        if kind_scaled and not in_map:
            msg = "part_map_kind_scaled scales the part map: it needs part_in_map true"
            raise ValueError(msg)
        super().__init__(num_categories, int(kinds) + 2)
        self.kinds, self.contrast, self.min_area = int(kinds), float(contrast), int(min_area)
        self.max_parts, self.seed = int(max_parts), int(seed)
        self.register_buffer("centres", torch.zeros(num_categories, self.kinds, PART_FEATURES))
        self.register_buffer("scale", torch.ones(num_categories, PART_FEATURES))
        self.register_buffer("spread", torch.ones(num_categories, self.kinds, PART_FEATURES))
        self.in_map = bool(in_map)
        if self.in_map:  # registered only when used, so checkpoints without the map load unchanged
            # per category: where the normals' parts lie (1 at each kind's most covered pixel), and the spread of
            # each entry of the image vector (the diagonal of its Gaussian's covariance)
            self.register_buffer("territory", torch.zeros(num_categories, height, width))
            self.register_buffer("vector_spread", torch.ones(num_categories, self.kinds + 2))
            self.register_buffer("territory_fitted", torch.tensor(False))
        self.kind_scaled = bool(kind_scaled)
        if self.kind_scaled:  # per category and kind: its training parts' distances' mean and spread
            self.register_buffer("distance_mean", torch.zeros(num_categories, self.kinds))
            self.register_buffer("distance_spread", torch.ones(num_categories, self.kinds))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object, **kwargs: object) -> None:
        """Refuse, by name, a checkpoint fitted before kinds had their own spread (its kinds were clustered on colour
        too; scoring it with this code would be silently wrong)."""
        if f"{prefix}centres" in state_dict and f"{prefix}spread" not in state_dict:
            msg = (
                f"this checkpoint's part prior ({prefix.rstrip('.')}) was fitted by anomalib-npgmf before 2026-12-07, "
                "when part kinds were clustered on colour as well as shape and had no spread of their own; fit the "
                "model again (anomalib train / engine.fit) to use it with this version"
            )
            raise ValueError(msg)
        if self.in_map and f"{prefix}centres" in state_dict and f"{prefix}territory" not in state_dict:
            msg = (
                f"this checkpoint's part prior ({prefix.rstrip('.')}) was fitted without part_in_map, so it has no "
                "part territories; build the model with part_in_map: false to load it, or fit it again"
            )
            raise ValueError(msg)
        if self.kind_scaled and f"{prefix}centres" in state_dict and f"{prefix}distance_mean" not in state_dict:
            msg = (
                f"this checkpoint's part prior ({prefix.rstrip('.')}) was fitted without part_map_kind_scaled, so it "
                "has no per-kind distance scale; build the model with part_map_kind_scaled: false to load it, or fit "
                "it again"
            )
            raise ValueError(msg)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def labelled_parts(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, H, W) component labels, (B, S, 6) part descriptors and (B, S) validity of pre-processed images
        (:func:`component_labels`, :func:`part_descriptors`)."""
        return cut_parts(to_rgb(images.float()), self.contrast, self.min_area)

    def parts(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, 6) part descriptors and (B, S) validity of pre-processed images (:func:`part_descriptors`)."""
        return self.labelled_parts(images)[1:]

    def largest_parts(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, max_parts, 6) descriptors of each image's largest parts, (B, max_parts) which rows are parts, and (B,)
        the number of parts (all of them): the kinds are read from a few dozen rows, not from all H·W label slots."""
        descriptors, valid = self.parts(images)
        order = self._largest(descriptors, valid)
        chosen = descriptors.gather(1, order[..., None].expand(-1, -1, descriptors.shape[2]))
        chosen_valid = valid.gather(1, order)
        if order.shape[1] < self.max_parts:
            chosen = F.pad(chosen, (0, 0, 0, self.max_parts - order.shape[1]))
            chosen_valid = F.pad(chosen_valid, (0, self.max_parts - order.shape[1]))
        return chosen, chosen_valid, valid.float().sum(dim=1)

    def _largest(self, descriptors: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, min(max_parts, S)) slots of each image's largest parts, largest first (non-parts last)."""
        area = torch.where(valid, descriptors[..., 0], torch.full_like(descriptors[..., 0], -1.0))
        return area.topk(min(self.max_parts, valid.shape[1]), dim=1).indices

    def samples(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1 + max_parts · 7) what :meth:`fit` reads: the number of parts, then each image's largest parts as
        (is part, descriptor) rows."""
        descriptors, valid, count = self.largest_parts(images)
        rows = torch.cat([valid.float()[..., None], descriptors], dim=2)
        return torch.cat([count[:, None], rows.flatten(1)], dim=1)

    def image_vectors(
        self, descriptors: torch.Tensor, valid: torch.Tensor, count: torch.Tensor, category: torch.Tensor
    ) -> torch.Tensor:
        """(B, kinds + 2): parts per kind (the nearest kind by shape, as k-means sorts them), number of parts, and the
        least typical part's distance to its nearest kind in that kind's spread, each image against its category's."""
        member, typicality = self.kinds_of(descriptors, valid, category)
        novelty = torch.amax(typicality, dim=1, keepdim=True)
        return torch.cat([member.sum(dim=1), count[:, None], novelty], dim=1)

    def kinds_of(
        self, descriptors: torch.Tensor, valid: torch.Tensor, category: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, P, kinds) one-hot kind of each part (the nearest by shape; zero rows for non-parts) and (B, P) its
        distance to its nearest kind in that kind's spread (0 for non-parts)."""
        scaled = descriptors / self.scale[category][:, None, :]
        offsets = scaled[:, :, None, :] - self.centres[category][:, None]  # (B, P, kinds, 6)
        shape_distance = offsets[..., :SHAPE_FEATURES].pow(2).sum(dim=3)
        member = (shape_distance == shape_distance.amin(dim=2, keepdim=True)).float() * valid.float()[..., None]
        typicality = (offsets / self.spread[category][:, None]).norm(dim=3).amin(dim=2)
        return member, typicality * valid.float()

    def _categories(self, images: torch.Tensor, category_index: torch.Tensor | None) -> torch.Tensor:
        """Each image's category (0 without an index)."""
        if category_index is not None:
            return category_index
        return torch.zeros(images.shape[0], dtype=torch.long, device=images.device)

    def kind_maps(self, images: torch.Tensor, category_index: torch.Tensor | None = None) -> torch.Tensor:
        """(B, H, W) int16 kind of the part each pixel belongs to (-1 off parts): what :meth:`fit_territory` reads."""
        labels, descriptors, valid = self.labelled_parts(images)
        member, _ = self.kinds_of(descriptors, valid, self._categories(images, category_index))
        kind = torch.where(member.sum(dim=2) > 0, member.argmax(dim=2), torch.full_like(valid, -1, dtype=torch.long))
        return kind.gather(1, labels.reshape(labels.shape[0], -1).long()).reshape(labels.shape).to(torch.int16)

    @torch.no_grad()
    def fit_territory(self, kind_maps: torch.Tensor, category_index: torch.Tensor | None = None) -> None:
        """Per category: each kind's share of the normal images covering each pixel, widened by ``TERRITORY_REACH``
        and scaled to 1 at its most covered pixel; the territory is the largest over kinds (so a rare kind's place
        counts as much as a common one's)."""
        index = checked_category_index(category_index, kind_maps.shape[0], self.num_categories)
        height, width = kind_maps.shape[1:]
        reach = max(1, round(TERRITORY_REACH * math.sqrt(height * width) / 128))
        for category in range(self.num_categories):
            maps = kind_maps[index == category]
            cover = torch.stack([(maps == kind).float().mean(dim=0) for kind in range(self.kinds)])
            widened = F.max_pool2d(cover[None], 2 * reach + 1, stride=1, padding=reach)[0]
            peak = widened.flatten(1).amax(dim=1).clamp_min(1e-12)
            self.territory[category] = (widened / peak[:, None, None]).amax(dim=0).to(self.territory.dtype)
        self.territory_fitted.fill_(True)

    def part_map(self, images: torch.Tensor, category_index: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 1, H, W) where the parts break the normals' pattern (issue 18: LOCO marks the part that breaks a rule,
        or where a missing one belongs). Each part is painted with the larger of its distance to its kind and its
        kind's count above the normals' mean (in spreads; an extra part lights its kind); a shortfall of parts below
        the normals' mean count is painted over the parts' territory (a missing part lights where parts lie)."""
        labels, descriptors, valid = self.labelled_parts(images)
        category = self._categories(images, category_index)
        member, typicality = self.kinds_of(descriptors, valid, category)
        if self.kind_scaled:
            typicality = self.scaled_in_kind(member, typicality, category)
        largest = self._largest(descriptors, valid)  # counted as the image vector counts them
        counts = member.gather(1, largest[..., None].expand(-1, -1, self.kinds)).sum(dim=1)
        mean, spread = self.mean[category], self.vector_spread[category]
        excess = ((counts - mean[:, : self.kinds]) / spread[:, : self.kinds]).clamp_min(0.0)
        slot_values = torch.maximum(typicality, (member * excess[:, None]).sum(dim=2))
        painted = slot_values.gather(1, labels.reshape(labels.shape[0], -1).long()).reshape(labels.shape)
        shortfall = ((mean[:, self.kinds] - valid.float().sum(dim=1)) / spread[:, self.kinds]).clamp_min(0.0)
        painted = torch.maximum(painted, shortfall[:, None, None] * self.territory[category])
        return painted[:, None] * self.territory_fitted.to(painted.dtype)

    def scaled_in_kind(self, member: torch.Tensor, typicality: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """(B, P) each part's distance above its kind's training parts' mean, in their spread (0 at or below it): normal
        parts sit a few spreads from their kind, and painted as it is that distance lifts the good images' map
        (issue 18; measured and not kept by box's rule, model README "Part distances in their kind's spread")."""
        share = member / member.sum(dim=2, keepdim=True).clamp_min(1.0)  # a tie splits; a non-part has no kind
        mean = (share * self.distance_mean[category][:, None]).sum(dim=2)
        spread = (share * self.distance_spread[category][:, None]).sum(dim=2) + (1.0 - share.sum(dim=2))
        return ((typicality - mean) / spread).clamp_min(0.0)

    @torch.no_grad()
    def fit_kind_distances(self, samples: torch.Tensor, category_index: torch.Tensor | None = None) -> None:
        """Per category and kind: the mean and spread of its training parts' distances to their kind (the samples
        :meth:`fit` reads, once the kinds are fitted); a kind with fewer than 2 parts keeps 0 and 1 (its distance as
        it is)."""
        samples = samples.to(self.centres.device, torch.float32)
        rows = samples[:, 1:].reshape(samples.shape[0], self.max_parts, PART_FEATURES + 1)
        index = checked_category_index(category_index, rows.shape[0], self.num_categories)
        index = index.to(rows.device)
        member, typicality = self.kinds_of(rows[..., 1:], rows[..., 0] > 0.5, index)
        for category in range(self.num_categories):
            chosen = index == category
            for kind in range(self.kinds):
                distances = typicality[chosen][member[chosen][..., kind] > 0].double()
                mean, spread = 0.0, 1.0
                if distances.numel() >= 2:
                    mean = float(distances.mean())
                    spread = max(float(distances.std(unbiased=False)), DISTANCE_SPREAD_FLOOR)
                self.distance_mean[category, kind] = mean
                self.distance_spread[category, kind] = spread

    @torch.no_grad()
    def fit(self, samples: torch.Tensor, category_index: torch.Tensor | None = None) -> None:
        """Per category: k-means of the training parts' shapes into kinds, each kind's spread, then the Gaussian of
        the images' vectors."""
        samples = samples.double().cpu()
        counts, rows = samples[:, 0], samples[:, 1:].reshape(samples.shape[0], self.max_parts, PART_FEATURES + 1)
        index = checked_category_index(category_index, rows.shape[0], self.num_categories)
        for category in range(self.num_categories):
            images = rows[index == category]
            valid, descriptors = images[..., 0] > 0.5, images[..., 1:]
            parts = descriptors[valid]
            if images.shape[0] < 2 or parts.shape[0] < self.kinds:
                msg = (
                    f"the part prior needs >= 2 training images and >= part_kinds={self.kinds} parts per category; "
                    f"category #{category} has {images.shape[0]} image(s) and {parts.shape[0]} part(s) (parts are "
                    f"blobs more than part_contrast={self.contrast:.3f} from the median colour, >= {self.min_area} px)"
                )
                raise ValueError(msg)
            scale = parts.std(dim=0, unbiased=False) + 1e-6
            scaled = parts / scale
            kinds = KMeans(self.kinds, n_init=10, random_state=self.seed).fit(scaled[:, :SHAPE_FEATURES].numpy())
            labels = torch.from_numpy(np.asarray(kinds.labels_, dtype=np.int64))
            shape_centres = torch.from_numpy(np.asarray(kinds.cluster_centers_, dtype=np.float64))
            for kind in range(self.kinds):
                members = scaled[labels == kind]
                if members.shape[0] == 0:  # fewer distinct shapes than kinds: k-means' centre, all parts' colour
                    members = torch.cat([shape_centres[kind], scaled.mean(dim=0)[SHAPE_FEATURES:]])[None]
                self.centres[category, kind] = members.mean(dim=0).to(self.centres.dtype)
                self.spread[category, kind] = (members.std(dim=0, unbiased=False) + SPREAD_FLOOR).to(self.spread.dtype)
            self.scale[category] = scale.to(self.scale.dtype)
            category_ids = torch.full((images.shape[0],), category, dtype=torch.long)
            vectors = self.image_vectors(descriptors.float(), valid, counts[index == category].float(), category_ids)
            self.mean[category] = vectors.double().mean(dim=0).to(self.mean.dtype)
            covariance = ledoit_wolf_covariance(vectors.double())
            self.precision[category] = precision_from_covariance(covariance).to(self.precision.dtype)
            if self.in_map:
                spread = covariance.diagonal().clamp_min(1e-12).sqrt()
                self.vector_spread[category] = spread.to(self.vector_spread.dtype)
        self.fitted.fill_(True)

    def forward(self, images: torch.Tensor, category_index: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) distance of each pre-processed image to its category's Gaussian (category 0 without an index)."""
        descriptors, valid, count = self.largest_parts(images)
        category = self._categories(images, category_index)
        centred = self.image_vectors(descriptors, valid, count, category) - self.mean[category]
        squared = mahalanobis_squared(centred, self.precision[category])
        return torch.sqrt(torch.clamp(squared, min=0.0)) * self.fitted.to(squared.dtype)
