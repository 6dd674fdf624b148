"""The streaming AU-sPRO equals the exact functional form on grid values, and plugs into anomalib's Evaluator."""

import numpy as np
import pytest
import torch

from anomalib_npgmf.data import generate_demo_dataset
from anomalib_npgmf.metrics import SPRO, LocoResults, StreamingSPRO, au_spro, loco_test_metrics
from anomalib_npgmf.metrics.streaming import float_keys


def _random_case(seed: int, coarse: bool):
    rng = np.random.default_rng(seed)
    maps, regions = [], []
    for index in range(10):
        values = rng.random((8, 9))
        # multiples of 1/64 are exact bin edges of an 18-bit key grid: then streaming == exact
        anomaly_map = np.floor(values * 64) / 64 if coarse else values
        image_regions = []
        if index % 3 == 0:
            mask = rng.random((8, 9)) < 0.3
            mask[0, 0] = True
            anomaly_map[mask] += 0.25
            image_regions.append((mask, float(mask.sum()) * 0.5))
        maps.append(anomaly_map)
        regions.append(image_regions)
    return maps, regions


def test_keys_are_monotone_over_the_whole_float_range():
    values = np.array([-1e30, -2.5, -1e-20, 0.0, 1e-20, 0.3, 0.30001, 7.0, 1e30], dtype=np.float32)
    keys = float_keys(values, 18)
    assert (np.diff(keys) >= 0).all()
    assert keys.min() >= 0
    assert keys.max() < 2**18


@pytest.mark.parametrize("limit", [0.05, 0.3])
def test_equals_exact_form_on_grid_values_and_is_close_otherwise(limit):
    for seed in range(3):
        maps, regions = _random_case(seed, coarse=True)
        metric = StreamingSPRO(fpr_limit=limit)
        metric.update(torch.from_numpy(np.stack(maps)), regions)
        # on grid values both forms use the same thresholds: equal up to float64 summation order (~1e-15)
        assert float(metric.compute()) == pytest.approx(au_spro(maps, regions, limit), abs=1e-9)
        maps, regions = _random_case(seed, coarse=False)
        metric = StreamingSPRO(fpr_limit=limit)
        metric.update(torch.from_numpy(np.stack(maps)), regions)
        # off the grid, values within one key bin (2**-9 relative) merge into one threshold. Seeded numpy data and
        # integer keys: the same on every machine; measured worst 1.0e-3 over these cases, bound 5x that
        assert float(metric.compute()) == pytest.approx(au_spro(maps, regions, limit), abs=5e-3)


def test_states_are_sums_so_ranks_merge_exactly():
    maps, regions = _random_case(0, coarse=True)
    whole = StreamingSPRO()
    whole.update(torch.from_numpy(np.stack(maps)), regions)
    first, second = StreamingSPRO(), StreamingSPRO()
    first.update(torch.from_numpy(np.stack(maps[:5])), regions[:5])
    second.update(torch.from_numpy(np.stack(maps[5:])), regions[5:])
    first.good_histogram += second.good_histogram
    first.spro_sum += second.spro_sum
    first.region_count += second.region_count
    # integer-valued histograms and float64 sums: merging ranks is exact up to float64 addition order
    assert float(first.compute()) == pytest.approx(float(whole.compute()), abs=1e-12)


def test_memory_does_not_grow_with_images():
    metric = StreamingSPRO(key_bits=12)
    sizes = {name: state.numel() for name, state in metric.metric_state.items()}
    metric.update(torch.rand(20, 16, 16), [[]] * 10 + [[(np.ones((16, 16), bool), 10.0)]] * 10)
    assert {name: state.numel() for name, state in metric.metric_state.items()} == sizes


def test_loco_metrics_in_anomalib_evaluator_match_the_exact_table(tmp_path):
    from anomalib.data import ImageBatch
    from anomalib.metrics import Evaluator

    folder = generate_demo_dataset(tmp_path, "demo_box", n_train=2, n_val=1, n_test_good=4, n_test_per_defect=1)
    paths = sorted(str(p) for p in (folder / "test").rglob("*.png"))
    rng = np.random.default_rng(0)
    maps = torch.from_numpy(np.floor(rng.random((len(paths), 1, 128, 128)) * 64) / 64).float()
    scores = maps.amax(dim=(1, 2, 3))
    evaluator = Evaluator(test_metrics=loco_test_metrics())
    batch = ImageBatch(
        image=torch.zeros(len(paths), 3, 128, 128), image_path=paths, anomaly_map=maps, pred_score=scores
    )
    for metric in evaluator.test_metrics:
        metric.update(batch)
    values = {metric.name: float(metric.compute()) for metric in evaluator.test_metrics}
    exact = LocoResults()
    exact.add(paths, scores, maps)
    table = exact.table()
    for kind in ("logical", "structural"):
        # same float64 computations through the Evaluator; 1e-6 only allows for the float32 maps/scores it is fed
        assert values[f"image_AUROC_{kind}"] == pytest.approx(table[kind]["image_AUROC"], abs=1e-6)
        assert values[f"AU-sPRO_{kind}"] == pytest.approx(table[kind]["AU-sPRO"], abs=1e-6)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="anomaly_type"):
        SPRO(anomaly_type="cosmetic")
    with pytest.raises(ValueError, match="key_bits"):
        StreamingSPRO(key_bits=30)
    with pytest.raises(ValueError, match="anomaly-free"):
        StreamingSPRO().compute()


def test_split_auroc_is_right_for_raw_scores_above_one():
    """torchmetrics' AUROC squashes scores outside [0, 1] with a sigmoid per batch; ours ranks them."""
    from anomalib_npgmf.metrics.streaming import PathSplitAUROC

    metric = PathSplitAUROC("logical")
    paths = ["c/test/good/0.png", "c/test/logical_anomalies/0.png", "c/test/structural_anomalies/0.png"]
    metric.update(torch.tensor([40.0, 41.0, 99.0]), paths)  # sigmoid(40) == sigmoid(41) == 1.0 in float32
    metric.update(torch.tensor([0.2]), ["c/test/good/1.png"])
    assert float(metric.compute()) == 1.0
