"""Which category an Npgmf image belongs to, and the category name's CLIP text prior (AGC).

The text tower runs once per category name, at the start of fitting (or of a test of a model that never fitted);
its embedding is then a buffer of the model, so checkpoints and exported graphs need no CLIP. One model may serve
several categories [ours]: each training image is conditioned on its own category, found from its path.
"""

import logging
from collections.abc import Sequence

import torch

from anomalib_npgmf.metrics.per_category import category_from_path

from .components import encode_category_names

logger = logging.getLogger(__name__)


class CategoryConditioning:
    """Mix into Npgmf (before ``AnomalibModule``): needs ``categories``, ``hparams``, ``model``, ``trainer`` and
    ``_clip_weights_file``."""

    # ----------------------------------------------------------------------------------------- priors and norms
    def _category_names(self) -> list[str]:
        if self.categories:
            return list(self.categories)
        if self.hparams.get("category"):
            return [self.hparams["category"]]
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        # MVTecAD/MVTecLOCO/VisA carry `category`; anomalib's Folder carries the user's `name`.
        category = getattr(datamodule, "category", None) or getattr(datamodule, "_name", None)
        if not category:
            msg = (
                "Npgmf's text prior needs the category name: pass `category=` (CLI: --model.category NAME) or use a "
                "datamodule that has a `category` (e.g. MVTecLOCO, MVTecAD, Folder with name=...)."
            )
            raise ValueError(msg)
        return [str(category)]

    def _ensure_prior(self) -> None:
        """Embed the category name once with the frozen CLIP text tower (restored checkpoints already carry it)."""
        prior = self.model.prior
        if prior is None or bool(prior.ready):
            return
        names = self._category_names()
        logger.info("Npgmf: encoding category prompt(s) %s with CLIP %s", names, self.hparams["clip_model"])
        embedding = encode_category_names(names, self.hparams["clip_model"], self._clip_weights_file)
        prior.set_embedding(embedding.to(prior.text_embedding.device))

    def check_datamodule_categories(self) -> None:
        """A multi-category model must be trained on a datamodule with the same categories, in the same order."""
        names = getattr(getattr(self.trainer, "datamodule", None), "categories", None)
        if self.categories and names and list(names) != list(self.categories):
            msg = f"Npgmf was built for categories {list(self.categories)} but the datamodule has {list(names)}"
            raise ValueError(msg)

    def category_indices(self, paths: Sequence[str]) -> torch.Tensor | None:
        """Index in ``categories`` of each image (``None`` for a one-category model)."""
        if len(self.categories) < 2:
            return None
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        category_of = getattr(datamodule, "category_of", None) or category_from_path
        indices = []
        for path in paths:
            name = category_of(str(path))
            if name not in self.categories:
                msg = f"image {path} belongs to category {name!r}, not one of the model's {list(self.categories)}"
                raise ValueError(msg)
            indices.append(self.categories.index(name))
        return torch.tensor(indices, dtype=torch.long, device=self.device)


def checked_categories(category: str | None, categories: Sequence[str] | None) -> list[str]:
    """The model's category list (empty: one category, named by ``category`` or the datamodule)."""
    if categories is None:
        return []
    names = [str(name) for name in categories]
    if category is not None:
        msg = "pass either category= (one category) or categories= (one model for several), not both"
        raise ValueError(msg)
    if not names or any(not name.strip() for name in names) or len(set(names)) != len(names):
        msg = f"categories must be distinct, non-empty names, got {names}"
        raise ValueError(msg)
    return names
