"""``benchmarks/accuracy/pseudo_part_weight.py``: it recomputes the weight a run chose at fit time with the model's
own rows and rule, refuses a run whose stored choice disagrees, and scores the test set at the chosen weight as the
model itself does."""

from pathlib import Path

import pytest
import torch

from anomalib_npgmf.benchmarking import saved_runs

from ..models.npgmf.conftest import CHOSEN_WEIGHTS, TINY_NPGMF, fitted_on, seeded_npgmf, small_screws_scene
from .conftest import load_accuracy_script


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    """A tiny Npgmf fitted with both weights chosen on a small generated screws scene, and the run folder."""
    root = tmp_path_factory.mktemp("pseudo_part_weight")
    small_screws_scene(root / "data")
    datamodule = saved_runs.loco_datamodule(root / "data", "demo_screws")
    datamodule.setup("fit")
    return fitted_on(seeded_npgmf({**TINY_NPGMF, **CHOSEN_WEIGHTS}, "demo_screws"), datamodule), root


def test_it_finds_the_runs_own_choice_and_scores_the_test_set_as_the_model_does(fitted_run):
    model, root = fitted_run
    script = load_accuracy_script("pseudo_part_weight")
    figures = script.measure(model, root, "demo_screws")
    assert figures["chosen weight"] == model.model.current_part_weight
    assert figures["pseudo-anomalies"] >= 8 and figures["normals"] == 8
    spread = figures["pseudo-anomaly AUROC by weight"].values()
    assert max(spread) > min(spread)  # the candidates rank differently, so the choice means something
    datamodule = saved_runs.loco_datamodule(root / "data", "demo_screws")
    datamodule.setup("test")
    scored = saved_runs.score_test_set(model, datamodule)
    assert torch.tensor(scored.results.scores).std() > 0
    own = scored.results.table()
    for kind in ("logical", "structural"):
        expected = float(own[kind]["image_AUROC"])
        assert figures["test at the chosen weight"][f"{kind} image_AUROC"] == pytest.approx(expected, abs=1e-6)


def test_a_run_whose_stored_choice_disagrees_is_refused(fitted_run):
    model, root = fitted_run
    script = load_accuracy_script("pseudo_part_weight")
    state = model.state_dict()
    other = next(w for w in (0.5, 16.0) if w != model.model.current_part_weight)
    model.model.set_chosen_weight("part", other)
    with pytest.raises(RuntimeError, match="the rule picks"):
        script.measure(model, root, "demo_screws")
    model.load_state_dict(state)
