"""Which images our fitting steps read: never a test image.

Npgmf fits its map normalisation (and INT8 export calibrates its quantisers) on held-out normal images. anomalib's
datamodules for datasets without a validation folder (``MVTecAD``, ``Visa``, and our ``MultiCategory`` over them)
default to ``val_split_mode="same_as_test"``: the validation loader *is* the test set, so fitting on it lets normal
test images set the fusion scales, which changes the AUROC it is then scored with. There we hold out a seeded slice of
the training normals instead (removed from training, so the model has not trained on them either). Validation
splits that cannot hold test images (``from_dir``: LOCO's ``validation/good``; ``from_train``) are used as they are.
"""

import logging
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from anomalib.data.utils import ValSplitMode
from torch.utils.data import DataLoader

logger = logging.getLogger(__name__)

HOLD_OUT_FRACTION = 0.1  # of each category's training normals (at least one image, at most all but one)
TEST_FREE_VAL_SPLITS = {ValSplitMode.FROM_DIR, ValSplitMode.FROM_TRAIN}
_HELD_OUT = "_anomalib_npgmf_held_out"  # datamodule attribute remembering its slice (one hold-out per datamodule)


def validation_is_test_free(datamodule: Any) -> bool:
    """Whether the datamodule's validation split cannot contain test images."""
    mode = getattr(datamodule, "val_split_mode", None)
    try:
        return mode is not None and ValSplitMode(mode) in TEST_FREE_VAL_SPLITS
    except ValueError:
        return False


def hold_out_indices(groups: Sequence[str], fraction: float, seed: int) -> list[int]:
    """Seeded choice of ``fraction`` of each group's rows (>= 1, keeping >= 1 for training); depends on the group's
    name and size only, not on the other groups."""
    held: list[int] = []
    for group in dict.fromkeys(groups):
        rows = [index for index, name in enumerate(groups) if name == group]
        if len(rows) < 2:
            continue
        count = min(len(rows) - 1, max(1, round(fraction * len(rows))))
        rng = np.random.default_rng([seed, zlib.crc32(str(group).encode())])
        held.extend(rows[i] for i in sorted(rng.choice(len(rows), size=count, replace=False).tolist()))
    return sorted(held)


def hold_out_normals(datamodule: Any, fraction: float = HOLD_OUT_FRACTION) -> Any | None:
    """The held-out training normals of ``datamodule`` (removed from its ``train_data``), or ``None`` when its
    validation split is test-free (use it). With a single training image per category nothing can be held out: the
    training images themselves are returned (still no test image).

    Idempotent per datamodule: a second fit (or a resumed one) gets the same slice and removes nothing more.
    """
    if datamodule is None or validation_is_test_free(datamodule):
        return None
    if hasattr(datamodule, _HELD_OUT):
        return getattr(datamodule, _HELD_OUT)
    train = getattr(datamodule, "train_data", None)
    samples = getattr(train, "samples", None)
    if samples is None or not len(samples):
        return None
    groups = [str(name) for name in samples["category"]] if "category" in samples.columns else [""] * len(samples)
    seed = getattr(datamodule, "seed", None)
    held = hold_out_indices(groups, fraction, 0 if seed is None else int(seed))
    if not held:  # one image per category: calibrate on the training images rather than on the test set
        logger.warning("Too few training images to hold any out for calibration; calibrating on training images.")
        setattr(datamodule, _HELD_OUT, train)
        return train
    held_set = set(held)
    keep = [index for index in range(len(samples)) if index not in held_set]
    calibration = train.subsample(held)
    datamodule.train_data = train.subsample(keep)
    logger.info(
        "Validation split '%s' may hold test images: %d training normals held out for calibration (%d left to train)",
        getattr(datamodule, "val_split_mode", None),
        len(held),
        len(keep),
    )
    setattr(datamodule, _HELD_OUT, calibration)
    return calibration


def calibration_loader(datamodule: Any, dataset: Any) -> DataLoader:
    """An evaluation-style loader over ``dataset`` with the datamodule's batch size and workers."""
    return DataLoader(
        dataset,
        batch_size=getattr(datamodule, "eval_batch_size", 32),
        shuffle=False,
        num_workers=getattr(datamodule, "num_workers", 0),
        collate_fn=getattr(dataset, "collate_fn", None),
    )
