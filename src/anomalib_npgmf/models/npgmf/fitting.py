"""How Npgmf fits what it does not learn by gradient: the normality priors, the category router and the map
normalisation (anomalib's fit protocol for statistics, as ``MemoryBankMixin`` is for memory banks).

Priors are fitted once on the training normals; the normalisation on held-out normals (validation, or a seeded slice
of the training normals where validation is the test set, ``models/common/calibration.py``), before each validation
epoch and once more on the final weights; the invariant and part priors' weights, when chosen
(``choose_invariant_weight``, ``choose_part_weight``), once, on the same held-out normals and their pseudo-anomalies
(``pseudo_anomalies.py``). Everything is gathered over
DDP ranks and de-duplicated by image path, so N ranks fit what one process would.
"""

import logging
from collections.abc import Iterable, Iterator

import torch
from anomalib.data import Batch
from torch.nn import functional as F  # noqa: N812
from tqdm.auto import tqdm

from anomalib_npgmf.models.common import batch_image_paths, gather_unique_by_key, image_seed
from anomalib_npgmf.models.common.calibration import calibration_loader, hold_out_normals

from .pseudo_anomalies import (
    CANDIDATE_WEIGHTS,
    PART_CANDIDATE_WEIGHTS,
    WeightChoice,
    choose_weight,
    part_anomalies,
)
from .torch_model import FROZEN_PARTS, PARTS

# the columns of ``pseudo_anomaly_distances``' rows (the part's last: added after the others had scripts reading them)
PSEUDO_COLUMNS = ("global", "invariant", "is_pseudo_anomaly", "part")

logger = logging.getLogger(__name__)


class NormalityFitting:
    """Mix into Npgmf (before ``AnomalibModule``): needs ``model`` (``NpgmfModel``), ``pre_processor``,
    ``trainer``, :meth:`category_indices` and :meth:`_ensure_prior` (``CategoryConditioning``)."""

    def on_validation_epoch_start(self) -> None:
        """Fit the priors (once) and each part's map normalisation, before the validation images are scored.

        Done here, not at the end of validation, so that the validation outputs anomalib's post-processor uses for
        its threshold are already on the final scale. The last epoch need not validate: see
        :meth:`calibrate_final_weights`.
        """
        self._calibrate()

    def on_test_start(self) -> None:
        """Scoring an untrained or restored model: make sure the text prior exists; warn if nothing was calibrated."""
        self._ensure_ready_for_inference()

    def on_predict_start(self) -> None:
        """See :meth:`on_test_start`."""
        self._ensure_ready_for_inference()

    def _ensure_ready_for_inference(self) -> None:
        self._ensure_prior()
        if not any(_is_fitted(self.model.normalizer(part)) for part in PARTS):
            logger.warning(
                "Npgmf: map normalisation was never fitted (no validation run); fused scores use unit scales. "
                "Train with a validation split of normal images for calibrated scores."
            )

    def calibrate_final_weights(self) -> None:
        """At the end of fitting (``FinalCheckpoint``): refit unless the last validation already ran on these weights.

        With ``check_val_every_n_epoch: 10`` and ``max_epochs: 15`` the normalisation would otherwise stay fitted on
        epoch 10's weights; ``FinalCheckpoint`` then saves the calibrated final state.
        """
        if self._calibrated_at_step != self.trainer.global_step:
            self._calibrate()

    def _calibrate(self) -> None:
        if any(not bool(prior.fitted) for prior in self.model.image_priors):
            self.fit_priors(self.trainer.train_dataloader)
        self.fit_normalization(self.calibration_dataloaders())
        self._calibrated_at_step = self.trainer.global_step

    def calibration_dataloaders(self) -> list:
        """Normal images the normalisation is fitted on, never test images (see ``models/common/calibration.py``):
        held-out training normals when the validation split may hold test images, else the validation loaders."""
        datamodule = getattr(self.trainer, "datamodule", None)
        held_out = hold_out_normals(datamodule)
        if held_out is not None:
            return [calibration_loader(datamodule, held_out)]
        loaders = self.trainer.val_dataloaders
        if loaders is None and datamodule is not None:  # no validation ran yet (e.g. check_val_every_n_epoch > epochs)
            loaders = datamodule.val_dataloader()
        return list(loaders) if isinstance(loaders, list | tuple) else [loaders]

    @torch.no_grad()
    def fit_priors(self, dataloader: Iterable | None) -> None:
        """Fit the normality priors and the category router on the (normal) training images, gathered over DDP ranks.

        Each image is encoded once (and its views once more for the invariant prior); every prior reads its own
        statistic of the same features.
        """
        priors = self.model.image_priors
        if not priors:
            return
        if dataloader is None:
            logger.warning("Npgmf: no training dataloader to fit the normality priors on; they stay off.")
            return
        keys: list[str] = []
        samples: list[list[torch.Tensor]] = [[] for _ in priors]
        indices: list[torch.Tensor] = []
        for images, paths in self._normal_images(dataloader, "Npgmf: fitting the normality priors"):
            for prior_samples, collected in zip(self.model.prior_samples(images), samples, strict=True):
                collected.extend(prior_samples.cpu())
            category_index = self.category_indices(paths)
            indices.extend(category_index.cpu() if category_index is not None else torch.zeros(len(paths)).long())
            keys.extend(paths)
        category_index = torch.stack(gather_unique_by_key(keys, indices)) if keys else None
        for prior, collected in zip(priors, samples, strict=True):
            prior.fit(torch.stack(gather_unique_by_key(keys, collected)).to(self.device), category_index)
        part_prior = self.model.part_prior
        if part_prior is not None and part_prior.in_map:
            self.fit_part_territory(dataloader)

    @torch.no_grad()
    def fit_part_territory(self, dataloader: Iterable) -> None:
        """Fit the part map on the training normals once the kinds are fitted (a second pass: the kinds come from all
        parts of all images): where each kind lies (``PartNormalityPrior.fit_territory``) and, with
        ``part_map_kind_scaled``, its parts' usual distance (``fit_kind_distances``), gathered over DDP ranks.

        The pass runs on a fork of torch's CPU random state: a shuffled loader draws its order from it, and without
        the fork the epochs after this fit would see other shuffles, so ``part_in_map`` would change training.
        """
        part_prior = self.model.part_prior
        keys: list[str] = []
        kind_maps: list[torch.Tensor] = []
        samples: list[torch.Tensor] = []
        indices: list[torch.Tensor] = []
        with torch.random.fork_rng(devices=[]):
            for images, paths in self._normal_images(dataloader, "Npgmf: fitting the part map"):
                category_index = self.category_indices(paths)
                kind_maps.extend(part_prior.kind_maps(images, category_index).cpu())
                if part_prior.kind_scaled:
                    samples.extend(part_prior.samples(images).cpu())
                indices.extend(category_index.cpu() if category_index is not None else torch.zeros(len(paths)).long())
                keys.extend(paths)
        category_index = torch.stack(gather_unique_by_key(keys, indices)) if keys else None
        part_prior.fit_territory(torch.stack(gather_unique_by_key(keys, kind_maps)).to(self.device), category_index)
        if part_prior.kind_scaled:
            part_prior.fit_kind_distances(torch.stack(gather_unique_by_key(keys, samples)), category_index)

    @torch.no_grad()
    def fit_normalization(self, dataloaders: Iterable | None) -> None:
        """Fit the quantile normalisation on the normal images of ``dataloaders`` (gathered over DDP ranks).

        Parts of :data:`FROZEN_PARTS` are fitted once: their maps would come out the same every epoch. The region
        prior's per-region scale is fitted first, on the same images (its map is painted with it); the calibration of
        the local score last, on the fused maps of the same images; then, once, the invariant and part weights when
        they are chosen (they read the image-level priors' normalisation, which is fitted once; the part's is chosen
        with the invariant one in its score).
        """
        region_prior = self.model.region_prior
        if region_prior is not None and not bool(region_prior.scale_fitted):
            self.fit_region_scale(dataloaders)
        # a frozen part's map is still needed where the calibrated local score re-reads the fused map
        needed = self.model.local_score_parts if self.model.local_score_norm is not None else ()
        skip = [part for part in FROZEN_PARTS if _is_fitted(self.model.normalizer(part)) and part not in needed]
        keys: list[str] = []
        maps: dict[str, list[torch.Tensor]] = {part: [] for part in PARTS}
        was_training = self.model.training
        self.model.eval()
        for images, paths in self._normal_images_of(dataloaders, "Npgmf: fitting map normalisation"):
            for part, part_map in self.model.raw_maps(images, skip=skip).items():
                maps[part].extend(part_map.cpu())
            keys.extend(paths)
        self.model.train(was_training)
        if not keys:
            logger.warning("Npgmf: the validation set has no normal images; map normalisation left unchanged.")
            return
        kept: dict[str, list[torch.Tensor]] = {}  # only what the local score's calibration re-reads
        for part, part_maps in maps.items():
            if part_maps:
                gathered = [m.to(self.device) for m in gather_unique_by_key(keys, part_maps)]
                self.model.normalizer(part).fit(gathered)
                if part in needed:
                    kept[part] = gathered
        self.model.fit_local_score(kept)
        unchosen = [prior for prior in ("invariant", "part") if _still_to_choose(self.model, prior)]
        if unchosen:
            rows = self.pseudo_anomaly_distances(dataloaders)
            if "invariant" in unchosen:
                self.choose_invariant_weight(dataloaders, rows)
            if "part" in unchosen:
                self.choose_part_weight(dataloaders, rows)

    @torch.no_grad()
    def choose_invariant_weight(self, dataloaders: Iterable | None, rows: torch.Tensor | None = None) -> None:
        """Choose the invariant prior's weight (:meth:`weight_choice`) from the normal images of ``dataloaders`` and
        their part-level pseudo-anomalies (``rows``: their :meth:`pseudo_anomaly_distances`, when already read).
        Without pseudo-anomalies (no image with a part) the configured weight stays."""
        self._choose_weight("invariant", self.pseudo_anomaly_distances(dataloaders) if rows is None else rows)

    @torch.no_grad()
    def choose_part_weight(self, dataloaders: Iterable | None, rows: torch.Tensor | None = None) -> None:
        """Choose the part prior's weight by the same rule from the same rows (after the invariant one: its chosen
        weight is in the score). Without pseudo-anomalies the configured weight stays."""
        self._choose_weight("part", self.pseudo_anomaly_distances(dataloaders) if rows is None else rows)

    def weight_choice(self, prior: str, rows: torch.Tensor) -> WeightChoice | None:
        """What the switch rule (``pseudo_anomalies.choose_weight``) picks for ``prior``'s ("invariant" / "part")
        weight on :meth:`pseudo_anomaly_distances` ``rows``, against the configured weight, setting nothing.

        The invariant prior: ``global + weight x invariant`` over ``CANDIDATE_WEIGHTS``. The part prior: the image-level
        score without it (the invariant prior at its current weight) ``+ weight x part`` over
        ``PART_CANDIDATE_WEIGHTS``. ``None``: no pseudo-anomaly (or no normal) to rank."""
        columns = pseudo_columns(rows)
        if prior == "invariant":
            base, added, candidates = columns["global"], columns["invariant"], CANDIDATE_WEIGHTS
        else:
            base, added = self.model.part_free_image_level_score(columns), columns["part"]
            candidates = PART_CANDIDATE_WEIGHTS
        fallback = self.model.built_weight(prior)
        return choose_weight(base, added, columns["is_pseudo_anomaly"], candidates, fallback)

    def _choose_weight(self, prior: str, rows: torch.Tensor) -> None:
        """Set ``prior``'s weight to :meth:`weight_choice`'s (the configured one, with a warning, when there is no
        pseudo-anomaly to rank)."""
        choice = self.weight_choice(prior, rows)
        fallback = self.model.built_weight(prior)
        labels = pseudo_columns(rows)["is_pseudo_anomaly"]
        anomalous = int(labels.sum())
        if choice is None:
            logger.warning(
                "Npgmf: no part-level pseudo-anomalies could be made from %d held-out normal image(s) (no part: a "
                "small blob off the median colour); %s_weight stays %g.",
                len(labels) - anomalous,
                prior,
                fallback,
            )
            self.model.set_chosen_weight(prior, fallback)
            return
        self.model.set_chosen_weight(prior, choice.weight, choice.separations)
        logger.info(
            "Npgmf: %s_weight %g chosen on %d normals and %d pseudo-anomalies (AUROC by weight: %s; the best leads the "
            "configured %g by %.3f, standard error %.3f)",
            prior,
            choice.weight,
            len(labels) - anomalous,
            anomalous,
            ", ".join(f"{candidate:g}: {auroc:.3f}" for candidate, auroc in choice.separations.items()),
            fallback,
            choice.lead,
            choice.error,
        )

    @torch.no_grad()
    def pseudo_anomaly_distances(self, dataloaders: Iterable | None) -> torch.Tensor:
        """(N, 4) float64 rows (:data:`PSEUDO_COLUMNS`: global, invariant distance, is pseudo-anomaly, part distance;
        normalised, 0 for a prior that is off) for the normal images of ``dataloaders`` and their part-level
        pseudo-anomalies (``pseudo_anomalies.py``), gathered over DDP ranks and ordered by image path (then kind), so N
        ranks see what one process would."""
        keys: list[str] = []
        rows: list[torch.Tensor] = []
        was_training = self.model.training
        self.model.eval()
        description = "Npgmf: choosing image-level weights on pseudo-anomalies"
        for images, paths in self._normal_images_of(dataloaders, description, pre_process=False):
            seeds = [image_seed(image) for image in images]
            images = self._at_input_size(images)
            made, made_keys = list(images), list(paths)
            for image, path, seed in zip(images, paths, seeds, strict=True):
                for kind, altered in part_anomalies(image, seed).items():
                    made.append(altered)
                    made_keys.append(f"{path}#{kind}")
            labels = torch.zeros(len(made), dtype=torch.float64)
            labels[len(images) :] = 1.0  # the normals come first, their pseudo-anomalies after them
            for chunk, chunk_labels in zip(
                torch.stack(made).split(len(images)), labels.split(len(images)), strict=True
            ):
                distances = self.model.image_level_distances(self._pre_process(chunk))
                distances["is_pseudo_anomaly"] = chunk_labels
                zeros = torch.zeros_like(chunk_labels)
                columns = [distances.get(name, zeros).cpu().double() for name in PSEUDO_COLUMNS]
                rows.extend(torch.stack(columns, dim=1))
            keys.extend(made_keys)
        self.model.train(was_training)
        gathered = gather_unique_by_key(keys, rows)  # every rank joins the gather, with or without images
        return torch.stack(gathered) if gathered else torch.zeros(0, len(PSEUDO_COLUMNS), dtype=torch.float64)

    def _at_input_size(self, images: torch.Tensor) -> torch.Tensor:
        """Images at the model's input size, still in [0, 1] (pseudo-anomalies are made at the size the model sees,
        where ``PART_MIN_AREA`` is meant; a full-size LOCO image would make compression noise a part)."""
        if tuple(images.shape[-2:]) == self.model.input_size:
            return images
        return F.interpolate(images, size=self.model.input_size, mode="bilinear", antialias=True, align_corners=False)

    @torch.no_grad()
    def fit_region_scale(self, dataloaders: Iterable | None) -> None:
        """Fit the region prior's per-region scale on the normal images of ``dataloaders`` (gathered over DDP ranks)."""
        keys: list[str] = []
        distances: list[torch.Tensor] = []
        for images, paths in self._normal_images_of(dataloaders, "Npgmf: fitting the region prior's scale"):
            distances.extend(self.model.region_distances(images).cpu())  # routed, as at inference
            keys.extend(paths)
        gathered = gather_unique_by_key(keys, distances) if keys else []
        if len(gathered) >= 2:
            self.model.region_prior.fit_scale(torch.stack(gathered).to(self.device))
        else:  # a quantile of one image is that image: paint raw distances, the part's own normalisation still applies
            logger.warning(
                "Npgmf: %d held-out normal image(s) for the region prior's per-region scale (needs 2 or more); "
                "its map uses unscaled distances.",
                len(gathered),
            )
            self.model.region_prior.scale_fitted.fill_(True)

    def _normal_images_of(
        self, dataloaders: Iterable | None, description: str, pre_process: bool = True
    ) -> Iterator[tuple[torch.Tensor, list[str]]]:
        """:meth:`_normal_images` over one dataloader or a list of them (``None`` entries skipped)."""
        loaders = dataloaders if isinstance(dataloaders, list | tuple) else [dataloaders]
        for loader in loaders:
            if loader is not None:
                yield from self._normal_images(loader, description, pre_process)

    def _normal_images(
        self, dataloader: Iterable, description: str, pre_process: bool = True
    ) -> Iterator[tuple[torch.Tensor, list[str]]]:
        """Normal images of a dataloader (pre-processed unless ``pre_process`` is false) with their paths (the keys
        that de-duplicate DDP padding)."""
        for batch in tqdm(dataloader, desc=description, leave=False, disable=None):
            normal = _normal_mask(batch)
            if not bool(normal.any()):
                continue
            images = batch.image[normal].to(self.device)
            if pre_process:
                images = self._pre_process(images)
            yield images, [path for path, keep in zip(batch_image_paths(batch), normal.tolist(), strict=True) if keep]

    def _pre_process(self, images: torch.Tensor) -> torch.Tensor:
        """The pre-processor's transform (resize, normalisation), as the model sees images at inference."""
        if self.pre_processor is not None and self.pre_processor.transform is not None:
            images = self.pre_processor.transform(images)
        return images


def pseudo_columns(rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """``pseudo_anomaly_distances``' rows as ``{column name: column}`` (:data:`PSEUDO_COLUMNS`)."""
    return {name: rows[:, index] for index, name in enumerate(PSEUDO_COLUMNS)}


def _still_to_choose(model: torch.nn.Module, prior: str) -> bool:
    """Whether ``prior``'s ("invariant" / "part") weight is chosen at fit time and has not been yet."""
    return getattr(model, f"choose_{prior}_weight") and not bool(getattr(model, f"{prior}_weight_chosen"))


def _is_fitted(normalizer: torch.nn.Module | None) -> bool:
    return normalizer is not None and bool(normalizer.fitted)


def _normal_mask(batch: Batch) -> torch.Tensor:
    """Which images of a batch are normal (all of them when the batch has no labels, e.g. LOCO validation)."""
    count = batch.image.shape[0]
    if batch.gt_label is None:
        return torch.ones(count, dtype=torch.bool)
    return torch.as_tensor(batch.gt_label).reshape(-1).cpu() == 0
