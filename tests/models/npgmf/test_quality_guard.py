"""Quality guards (issue 16): CI fails when Npgmf stops detecting logical anomalies, or when a switch stops mattering.

Runs are bit-reproducible on one machine (fixed seeds, one thread count), so the figures here are exact there. The
margin is not a tolerance on noise: it is the lead over anomalib's ReverseDistillation measured on this scene, cut to
what every one of three init seeds kept (see ``MARGIN``), so a change of CPU or of float summation order cannot
trip it, but a model that scores at random (AUROC ~0.5, i.e. about RD's own level or below) does: the last test
proves that by making the maps image-blind and running the same check.
"""

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[3]
DEMO_CONFIG = REPO / "configs" / "npgmf" / "demo_cpu.yaml"
SCENE = {"image_size": 128, "n_train": 40, "n_val": 10, "n_test_good": 12, "n_test_per_defect": 4, "seed": 3}
EPOCHS = 3
# Logical image AUROC lead of the demo config over ReverseDistillation on SCENE, EPOCHS epochs, measured for init
# seeds 0 / 1 / 2 (Npgmf re-measured 2026-12-06 with the demo config's invariant prior, its weight chosen at fit time:
# 4 / 4 / 8, benchmarks/accuracy/small_sample_invariant_2026-12-06.json; RD as first measured): 1.000 - 0.608 = 0.392,
# 1.000 - 0.475 = 0.525, 1.000 - 0.358 = 0.642 (without the invariant prior, 12-05: 0.900 / 0.917 / 0.946; the test
# uses seed 0; `-s` prints its MEASURED line). A model scoring at random (~0.5) would lead RD by at most 0.5 - 0.358 =
# 0.14 on any of those seeds, and by -0.11 on seed 0: a margin of 0.15 fails it, while leaving 0.24 below the smallest
# lead measured for changes of CPU or float summation order (a handful of the 32 logical test images changing rank).
# On another CPU RD's seed 0 gave 0.5292 (a lead of 0.471; 0.6083 again on 2026-12-06): anomalib's RD moves between
# CPUs, Npgmf did not; the margin holds either way.
# With the demo config's part prior (kinds by shape, a spread per kind, weight 1; 2026-12-07) seed 0 gives 0.9958
# against RD's 0.5292 on this AMD machine (the first part prior at weight 4, 12-06: 1.000); seeds 1 / 2 not re-measured.
MARGIN = 0.15


def _demo_settings() -> dict:
    """The CPU demo config's model arguments, read from the shipped file (not copied)."""
    settings = dict(yaml.safe_load(DEMO_CONFIG.read_text())["model"]["init_args"])
    settings.pop("visualizer", None)
    return settings


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    from anomalib_npgmf.data import generate_demo_dataset

    root = tmp_path_factory.mktemp("guard_data")
    generate_demo_dataset(root, "guard_box", scene="box", **SCENE)
    return root, "guard_box"


def _datamodule(scene: tuple[Path, str]) -> object:
    from anomalib_npgmf.data import MVTecLOCORegions

    root, category = scene
    return MVTecLOCORegions(
        root=root, category=category, num_workers=0, train_batch_size=8, eval_batch_size=16, loco_report=False
    )


def _train(model: object, scene: tuple[Path, str], output: Path) -> object:
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    engine = Engine(
        max_epochs=EPOCHS, accelerator="cpu", devices=1, logger=False, default_root_dir=output,
        enable_progress_bar=False,
    )  # fmt: skip
    engine.fit(model, datamodule=_datamodule(scene))
    seed_everything(0)
    return model


def logical_image_auroc(model: object, scene: tuple[Path, str]) -> float:
    """Image AUROC of logical anomalies against the good test images, on the raw (un-post-processed) scores:
    anomalib's post-processor clamps to [0, 1], and ties at the clamp would blur the ranking."""
    from anomalib_npgmf.metrics import LocoResults

    datamodule = _datamodule(scene)
    datamodule.setup("test")
    model.eval()
    results = LocoResults()
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            output = model.model(model.pre_processor(batch.image))
            results.add(batch.image_path, output.pred_score, output.anomaly_map)
    return float(results.table()["logical"]["image_AUROC"])


def check_guard(npgmf_auroc: float, baseline_auroc: float) -> None:
    """The guard itself: Npgmf's logical lead over ReverseDistillation is at least MARGIN."""
    assert npgmf_auroc - baseline_auroc >= MARGIN, (
        f"Npgmf logical image AUROC {npgmf_auroc:.3f} leads ReverseDistillation's {baseline_auroc:.3f} by less than "
        f"{MARGIN}: the model stopped detecting logical anomalies"
    )


@pytest.fixture(scope="module")
def trained(scene: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    from anomalib.models import ReverseDistillation
    from lightning.pytorch import seed_everything

    from anomalib_npgmf import Npgmf

    seed_everything(0)
    npgmf = _train(Npgmf(**_demo_settings(), visualizer=False), scene, tmp_path_factory.mktemp("npgmf"))
    seed_everything(0)
    baseline = ReverseDistillation(backbone="resnet18", pre_trained=False, visualizer=False)
    baseline = _train(baseline, scene, tmp_path_factory.mktemp("rd"))
    return {"npgmf": npgmf, "rd": baseline, "rd_auroc": logical_image_auroc(baseline, scene)}


def test_the_demo_config_beats_reverse_distillation_on_logical_anomalies(trained, scene):
    npgmf_auroc = logical_image_auroc(trained["npgmf"], scene)
    print(f"MEASURED npgmf {npgmf_auroc:.4f} rd {trained['rd_auroc']:.4f} lead {npgmf_auroc - trained['rd_auroc']:.4f}")
    check_guard(npgmf_auroc, trained["rd_auroc"])


def image_blind_maps(self: object, images: torch.Tensor, category_index: object = None) -> dict[str, torch.Tensor]:
    """Stand-in for ``NpgmfModel.unsmoothed_maps`` that ignores the image: noise seeded by the image's bytes."""
    del category_index
    maps = []
    for image in images:
        seed = int.from_bytes(hashlib.sha256(image.numpy().tobytes()).digest()[:4], "little")
        maps.append(torch.rand((1, *self.input_size), generator=torch.Generator().manual_seed(seed)))
    return {"structural": torch.stack(maps)}


def test_the_guard_fails_on_a_model_whose_maps_are_image_blind(trained, scene, monkeypatch):
    """Proof that the guard can fail: the same check on Npgmf with maps replaced by noise seeded per image."""
    from anomalib_npgmf.models.npgmf.torch_model import NpgmfModel

    monkeypatch.setattr(NpgmfModel, "unsmoothed_maps", image_blind_maps)
    blind_auroc = logical_image_auroc(trained["npgmf"], scene)
    with pytest.raises(AssertionError, match="stopped detecting"):
        check_guard(blind_auroc, trained["rd_auroc"])


# Each switch flipped from the demo config, with what it needs flipped along: the demo config chooses the invariant
# prior's weight against the global prior, so a run without either cannot choose it.
SWITCHES = {
    "use_global_prior": {"use_global_prior": False, "choose_invariant_weight": False},
    "use_patch_prior": {"use_patch_prior": False},
    "raw_embedding": {"raw_embedding": False},
    "codebook_size": {"codebook_size": 0},
    "prior_channels": {"prior_channels": 0},
    "use_structural": {"use_structural": False},
    "use_logical": {"use_logical": False},
    "use_invariant_prior": {"use_invariant_prior": False, "choose_invariant_weight": False},
    "use_region_prior": {"use_region_prior": True},  # off in the demo config: flipping it on must reach the map
    "use_part_prior": {"use_part_prior": False, "part_in_map": False, "choose_part_weight": False},  # need the prior
    "part_in_map": {"part_in_map": False},
}


@pytest.fixture(scope="module")
def calibrated_scores(scene: tuple[Path, str]) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """Scores and anomaly maps of a few test images by an untrained demo-config Npgmf with some switches flipped,
    priors and normalisation fitted as in training (same seed, same images); cached per switch setting."""
    from anomalib.data import ImageBatch
    from anomalib.data.utils import read_image

    from anomalib_npgmf import Npgmf

    root, category = scene
    train = sorted((root / category / "train" / "good").glob("*.png"))[:8]
    test = sorted((root / category / "test").rglob("*.png"))[:6]
    batch = ImageBatch(
        image=torch.stack([read_image(path, as_tensor=True) for path in train]),
        gt_label=torch.zeros(len(train), dtype=torch.long),
        image_path=[str(path) for path in train],
    )
    images = torch.stack([read_image(path, as_tensor=True) for path in test])
    cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def scores(**overrides: object) -> tuple[torch.Tensor, torch.Tensor]:
        key = tuple(sorted(overrides.items()))
        if key not in cache:
            torch.manual_seed(0)
            model = Npgmf(**{**_demo_settings(), **overrides}, category=category, visualizer=False)
            model._ensure_prior()
            model.model.train()
            model.model(model.pre_processor.transform(batch.image))  # codebooks seeded, as in training
            model.fit_priors([batch])
            model.fit_normalization([[batch]])
            model.eval()
            with torch.no_grad():
                output = model.model(model.pre_processor(images))
                cache[key] = output.pred_score, output.anomaly_map
        return cache[key]

    return scores


@pytest.mark.parametrize(("switch", "flipped"), list(SWITCHES.items()), ids=list(SWITCHES))
def test_every_ablation_switch_changes_the_output(switch, flipped, calibrated_scores):
    """Each switch, flipped alone from the demo config, changes the output (scores or maps) of the same images: a
    switch that no longer reaches the output would leave both equal. Both, because an image-level part reaches only
    the scores, and a map part's share of a score can be small beside the image-level distances of an 8-image fit."""
    (reference, reference_map), (scores, flipped_map) = calibrated_scores(), calibrated_scores(**flipped)
    assert reference.std() > 0, "reference scores are all equal: the comparison would prove nothing"
    assert reference_map.std() > 0, "reference maps are constant: the comparison would prove nothing"
    scores_moved = not torch.allclose(reference, scores, rtol=1e-4, atol=0)
    maps_moved = reference_map.shape != flipped_map.shape or not torch.allclose(reference_map, flipped_map, rtol=1e-4)
    assert scores_moved or maps_moved, f"{switch} flipped ({flipped}) left the scores and maps unchanged"
