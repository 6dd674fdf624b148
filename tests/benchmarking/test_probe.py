"""The no-training pooled-Gaussian probe: seeded, scores what it never saw higher, and runs as a harness row."""

import csv

import pytest
import torch

from anomalib_npgmf.benchmarking import accuracy
from anomalib_npgmf.benchmarking.probe import PooledGaussianProbeModel


def _fitted(grid, seed, normals):
    model = PooledGaussianProbeModel(grid=grid, seed=seed)
    model.train()
    for chunk in normals.split(8):
        model(chunk)
    model.fit()
    return model.eval()


@pytest.fixture(scope="module")
def normals():
    generator = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, 64, 64, generator=generator)
    return base + 0.05 * torch.randn(24, 3, 64, 64, generator=generator)


@pytest.mark.parametrize("grid", [1, 2])
def test_probe_keeps_256_seeded_dimensions_and_scores_outliers_higher(grid, normals):
    model = _fitted(grid, 3, normals)
    assert model.feature_index.numel() == 256
    assert model.descriptor(normals[:2]).shape == (2, 256)
    odd = normals[:4].clone()
    odd[:, :, :32, :32] = 1.0  # a large bright patch no normal image has
    normal_scores, odd_scores = model(normals[:4]).pred_score, model(odd).pred_score
    assert odd_scores.min() > normal_scores.max()
    output = model(odd)
    assert output.anomaly_map.shape == (4, 1, 64, 64)
    assert torch.equal(output.anomaly_map.amax(dim=(1, 2, 3)), output.pred_score)  # no localisation: constant map


def test_probe_is_reproducible_per_seed_whatever_ran_before(normals):
    torch.manual_seed(123)
    first = _fitted(2, 5, normals)(normals[:3]).pred_score
    torch.manual_seed(456)
    again = _fitted(2, 5, normals)(normals[:3]).pred_score
    other = _fitted(2, 6, normals)
    assert torch.equal(first, again)
    assert not torch.equal(other.feature_index, _fitted(2, 5, normals).feature_index)


def test_encoder_batch_norm_stays_frozen_while_collecting(normals):
    model = PooledGaussianProbeModel(grid=1, seed=0)
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    model.train()
    assert not model.encoder.training
    model(normals[:8])
    assert all(torch.equal(before[k], v) for k, v in model.encoder.state_dict().items())


def test_probe_rows_run_through_the_harness_on_the_held_out_scene(tmp_path):
    argv = ["--output", str(tmp_path), "--small", "--seeds", "0", "--image-size", "64", "--scenes", "screws"]
    assert accuracy.main([*argv, "--models", "probe_mean", "probe_grid2"]) == 0
    rows = list(csv.DictReader((tmp_path / "runs.csv").open()))
    assert [(r["model"], r["scene"]) for r in rows] == [("probe_mean", "demo_screws"), ("probe_grid2", "demo_screws")]
    for row in rows:
        assert not row["note"]
        assert 0.0 <= float(row["logical_AUROC"]) <= 1.0
        assert 0.0 <= float(row["structural_AUROC"]) <= 1.0
    assert "| probe_grid2 | demo_screws | 1 |" in (tmp_path / "accuracy.md").read_text()
