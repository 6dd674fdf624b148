"""The part-statistics probe: finds parts, counts them per kind, and scores a missing, extra or odd part higher."""

import csv

import numpy as np
import pytest
import torch

from anomalib_npgmf.benchmarking import accuracy
from anomalib_npgmf.benchmarking.part_probe import PartStatisticsProbeModel, image_parts

from ..models.npgmf.conftest import TRAY_BACKGROUND as BACKGROUND
from ..models.npgmf.conftest import TRAY_PART_COLOUR as PART_COLOUR
from ..models.npgmf.conftest import plain_tray as _tray


def _fitted(normals: torch.Tensor, kinds: int = 2) -> PartStatisticsProbeModel:
    model = PartStatisticsProbeModel(kinds=kinds, min_area=4)
    model.train()
    for chunk in normals.split(8):
        model(chunk)
    model.fit()
    return model.eval()


def test_parts_are_found_measured_and_specks_dropped():
    image = np.empty((64, 64, 3))
    image[:] = BACKGROUND
    image[5:10, 5:10] = PART_COLOUR  # 25 px square
    image[30:32, 10:40] = PART_COLOUR  # 60 px bar, 30 long
    image[50, 50] = PART_COLOUR  # a 1 px speck: below min_area
    images = torch.from_numpy(image).permute(2, 0, 1)[None]
    [(descriptors, labels)] = image_parts(images, threshold=40 / 255, min_area=4)
    assert descriptors.shape == (2, 6)
    assert np.allclose(np.exp(descriptors[:, 0]), [25, 60])
    length, width = np.exp(descriptors[1, 1]), np.exp(descriptors[1, 2])
    assert 25 < length < 40 and width < 4  # second-moment extent: a uniform bar of length L gives L / sqrt(3) * 2
    assert np.allclose(descriptors[0, 3:], PART_COLOUR)
    assert labels.max() == 2 and labels[50, 50] == 0 and (labels == 1).sum() == 25


def test_a_missing_extra_or_odd_part_scores_above_every_normal_tray():
    rng = np.random.default_rng(0)
    model = _fitted(torch.stack([_tray(rng) for _ in range(40)]))
    normal = model(torch.stack([_tray(rng) for _ in range(12)]))
    assert normal.pred_score.std() > 0  # normal trays differ, so the ranking below is not a tie
    odd = torch.stack([_tray(rng, discs=1), _tray(rng, discs=3), _tray(rng, bars=2), _tray(rng, bar_length=7)])
    output = model(odd)
    assert output.pred_score.min() > normal.pred_score.max(), (output.pred_score, normal.pred_score.max())
    assert output.anomaly_map.shape == (4, 1, 64, 64)
    short_bar = output.anomaly_map[3, 0]
    assert short_bar.max() > normal.anomaly_map.amax(), "the odd short bar is not painted above every normal part"
    assert float(short_bar[short_bar > 0].min()) >= 0  # background stays 0, parts carry their novelty


def test_the_probe_is_blind_without_counts():
    """The check above can fail: an image vector without the counts cannot see a missing disc."""
    rng = np.random.default_rng(1)
    model = _fitted(torch.stack([_tray(rng) for _ in range(40)]))
    model.image_vector = lambda descriptors: np.array([model.novelty(descriptors)[1].max(initial=0.0)])
    vectors = torch.from_numpy(np.stack([model.image_vector(model.parts(_tray(rng)[None])[0][0]) for _ in range(30)]))
    model.mean, model.precision = vectors.mean(0), torch.diag(1 / vectors.var(0))
    normal = model(torch.stack([_tray(rng) for _ in range(12)])).pred_score
    missing = model(torch.stack([_tray(rng, discs=1) for _ in range(4)])).pred_score
    assert missing.min() <= normal.max()


def test_bad_settings_and_partless_training_images_are_refused():
    with pytest.raises(ValueError, match="kinds >= 1"):
        PartStatisticsProbeModel(kinds=0)
    model = PartStatisticsProbeModel(kinds=2)
    model.train()
    model(torch.full((3, 3, 32, 32), 0.5))  # plain images: no parts
    with pytest.raises(ValueError, match="found 0 parts"):
        model.fit()


def test_probe_parts_runs_through_the_harness_on_the_held_out_scene(tmp_path):
    argv = ["--output", str(tmp_path), "--small", "--seeds", "0", "--image-size", "64", "--scenes", "screws"]
    assert accuracy.main([*argv, "--models", "probe_parts"]) == 0
    rows = list(csv.DictReader((tmp_path / "runs.csv").open()))
    assert [(row["model"], row["scene"], row["note"]) for row in rows] == [("probe_parts", "demo_screws", "")]
    assert float(rows[0]["structural_AUROC"]) > 0.5  # scratches and stains add parts; chance would be 0.5
