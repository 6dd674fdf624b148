"""``benchmarks/accuracy/fuse_part_probe.py``: weight 0 is Npgmf alone, a very large weight is the part probe alone,
so the fused figures in between are read on the two rows' own scales."""

from pathlib import Path

import numpy as np
import pytest

from ..models.npgmf.conftest import IMAGE_SIZE, fitted_tiny_npgmf
from .conftest import load_accuracy_script


@pytest.fixture(scope="module")
def script():
    return load_accuracy_script("fuse_part_probe")


def _fitted_probe(folder: Path, category: str):
    from anomalib_npgmf.benchmarking.data import loco_datamodule
    from anomalib_npgmf.benchmarking.part_probe import PartStatisticsProbe

    resize = PartStatisticsProbe.configure_pre_processor((IMAGE_SIZE, IMAGE_SIZE))
    probe = PartStatisticsProbe(kinds=4, min_area=2, pre_processor=resize)
    datamodule = loco_datamodule(folder / "data", category)
    datamodule.setup("fit")
    probe.model.train()
    for batch in datamodule.train_dataloader():
        probe.model(probe.pre_processor(batch.image))
    probe.model.fit()
    return probe.eval()


def test_the_end_weights_give_each_row_alone(script, tmp_path: Path):
    from anomalib_npgmf.benchmarking.data import loco_datamodule
    from anomalib_npgmf.data import generate_demo_dataset
    from anomalib_npgmf.metrics import rank_auroc

    counts = {"n_train": 16, "n_val": 6, "n_test_good": 6, "n_test_per_defect": 2}
    generate_demo_dataset(tmp_path / "data", "demo_screws", scene="screws", image_size=IMAGE_SIZE, seed=0, **counts)
    model, probe = fitted_tiny_npgmf(), _fitted_probe(tmp_path, "demo_screws")
    figures = script.fused_figures(model, probe, tmp_path, "demo_screws", weights=(0.0, 1.0, 1e9))

    datamodule = loco_datamodule(tmp_path / "data", "demo_screws")
    datamodule.setup("test")
    alone = {}
    for name, each in (("model", model), ("probe", probe)):
        scores = script.raw_scores(each, datamodule.test_dataloader())
        kinds = [path.split("/")[-2] for batch in datamodule.test_dataloader() for path in batch.image_path]
        chosen = [i for i, kind in enumerate(kinds) if kind in {"good", "logical_anomalies"}]
        assert np.std(scores[chosen]) > 0  # a spread, so the equalities below can fail
        alone[name] = rank_auroc(scores[chosen], np.array([kinds[i] == "logical_anomalies" for i in chosen]))
    assert figures["0"]["logical"] == pytest.approx(alone["model"], abs=1e-12)
    assert figures["1e+09"]["logical"] == pytest.approx(alone["probe"], abs=1e-12)
    assert set(figures) == {"0", "1", "1e+09"}
