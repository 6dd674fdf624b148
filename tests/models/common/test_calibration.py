"""What our fits read (never a test image) and when they run (the saved model is calibrated on its final weights)."""

from pathlib import Path

import pytest
import torch

from anomalib_npgmf.models.common.calibration import hold_out_indices

COUNTS = {"n_train": 10, "n_val": 3, "n_test_good": 3, "n_test_per_defect": 1}


def test_hold_out_is_seeded_per_group_and_keeps_training_images():
    groups = ["a"] * 20 + ["b"] * 5 + ["c"]
    held = hold_out_indices(groups, 0.1, seed=0)
    assert [groups[i] for i in held] == ["a", "a", "b"]  # 10 % of 20, at least one of 5, none of a single image
    assert held == hold_out_indices(groups, 0.1, seed=0)
    assert held != hold_out_indices(groups, 0.1, seed=1)
    # a group's choice does not depend on the other groups
    assert [i for i in hold_out_indices(["a"] * 20, 0.1, seed=0)] == [i for i in held if groups[i] == "a"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from anomalib_npgmf.data import generate_demo_dataset

    root = tmp_path_factory.mktemp("calibration")
    generate_demo_dataset(root / "loco", "demo_box", image_size=64, seed=0, **COUNTS)
    generate_demo_dataset(root / "ad", "ad_box", image_size=64, seed=1, layout="mvtec_ad", **COUNTS)
    generate_demo_dataset(root / "ad", "ad_pins", image_size=64, seed=2, layout="mvtec_ad", scene="pins", **COUNTS)
    return root


def _spy_fits(monkeypatch) -> list[tuple[str, list[str]]]:
    """Record (what is fitted, image paths read) for every fit of Npgmf."""
    from anomalib_npgmf import Npgmf

    reads: list[tuple[str, list[str]]] = []
    original = Npgmf._normal_images

    def recording(self, dataloader, description, *args):
        for images, paths in original(self, dataloader, description, *args):
            reads.append((description, list(paths)))
            yield images, paths

    monkeypatch.setattr(Npgmf, "_normal_images", recording)
    return reads


def _train(datamodule, tmp_path: Path, settings: dict, model_class=None, **trainer) -> tuple[object, object]:
    from anomalib.engine import Engine

    from anomalib_npgmf import Npgmf

    torch.manual_seed(0)
    model = (model_class or Npgmf)(**settings)
    engine = Engine(accelerator="cpu", devices=1, default_root_dir=tmp_path, logger=False, **trainer)
    engine.fit(model, datamodule=datamodule)
    return model, engine


@pytest.mark.parametrize("datamodule_name", ["MVTecAD", "MultiCategory"])
def test_no_test_image_reaches_a_fit_without_a_validation_folder(
    data, tmp_path, monkeypatch, datamodule_name, fit_npgmf
):
    """anomalib's MVTecAD and MultiCategory over MVTec AD validate on the test set (same_as_test): the fits read a
    held-out slice of the training normals instead, which the model does not train on."""
    from anomalib.data import MVTecAD

    from anomalib_npgmf.data import MultiCategory

    reads = _spy_fits(monkeypatch)
    if datamodule_name == "MVTecAD":
        datamodule = MVTecAD(root=data / "ad", category="ad_box", num_workers=0, train_batch_size=4, eval_batch_size=4)
        settings = fit_npgmf
    else:
        datamodule = MultiCategory(
            root=data / "ad", categories=["ad_box", "ad_pins"], num_workers=0, train_batch_size=4, eval_batch_size=4
        )
        settings = {**fit_npgmf, "categories": ["ad_box", "ad_pins"]}
    _train(datamodule, tmp_path, settings, max_epochs=1)
    assert str(datamodule.val_split_mode.value) == "same_as_test"  # validation *is* the test set here
    normalisation = {p for what, paths in reads if "normalisation" in what for p in paths}
    priors = {p for what, paths in reads if "priors" in what for p in paths}
    weight_choice = {p for what, paths in reads if "image-level weights" in what for p in paths}
    assert normalisation and priors  # both fits ran (the spy sees them)
    assert weight_choice == normalisation  # the chosen weights (invariant, part) read the same held-out normals
    assert not [p for p in normalisation | priors if "test" in Path(p).parts], "a fit read a test image"
    assert all(Path(p).parts[-3:-1] == ("train", "good") for p in normalisation)
    trained_on = set(map(str, datamodule.train_data.samples.image_path))
    assert priors == trained_on
    assert not normalisation & trained_on  # held out: not trained on either
    if datamodule_name == "MultiCategory":  # every category has calibration images
        assert {Path(p).parents[2].name for p in normalisation} == {"ad_box", "ad_pins"}


def test_loco_fits_read_the_validation_folder(data, tmp_path, monkeypatch, fit_npgmf):
    """A test-free validation split (LOCO's validation/good) is used as it is; nothing is held out."""
    from anomalib_npgmf.data import MVTecLOCORegions

    reads = _spy_fits(monkeypatch)
    datamodule = MVTecLOCORegions(
        root=data / "loco", category="demo_box", num_workers=0, train_batch_size=4, eval_batch_size=4
    )
    _train(datamodule, tmp_path, fit_npgmf, max_epochs=1)
    normalisation = {p for what, paths in reads if "normalisation" in what for p in paths}
    assert normalisation == set(map(str, datamodule.val_data.samples.image_path))
    assert len(datamodule.train_data) == COUNTS["n_train"]


def _normaliser_state(state: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.endswith(("_norm.q_low", "_norm.q_high"))}


def test_the_checkpoint_is_calibrated_on_the_final_weights_when_the_last_epoch_does_not_validate(
    data, tmp_path, fit_npgmf
):
    """check_val_every_n_epoch=2 with max_epochs=3: validation after epoch 2 only. The checkpoint anomalib writes
    must hold epoch 3's weights with normalisation fitted on them (not epoch 2's)."""
    from anomalib_npgmf import Npgmf
    from anomalib_npgmf.data import MVTecLOCORegions

    datamodule = MVTecLOCORegions(
        root=data / "loco", category="demo_box", num_workers=0, train_batch_size=4, eval_batch_size=4
    )
    fitted: list[dict[str, torch.Tensor]] = []

    class Recording(Npgmf):
        def fit_normalization(self, dataloaders):
            super().fit_normalization(dataloaders)
            fitted.append({k: v.clone() for k, v in _normaliser_state(self.state_dict()).items()})

    model, engine = _train(datamodule, tmp_path, fit_npgmf, Recording, max_epochs=3, check_val_every_n_epoch=2)
    assert len(fitted) == 2  # at the epoch-2 validation, and at the end for the final weights
    assert fitted[0].keys() == fitted[1].keys() and fitted[0]
    assert any(not torch.equal(fitted[0][k], fitted[1][k]) for k in fitted[0])  # training moved the scales
    checkpoint_path = Path(engine.trainer.checkpoint_callback.best_model_path)
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == engine.trainer.global_step == 3 * 3  # 10 train images, batch 4: 3 steps
    for key, value in fitted[1].items():
        assert torch.equal(checkpoint["state_dict"][key], value), key
    final = model.state_dict()
    for key, value in checkpoint["state_dict"].items():
        assert torch.equal(value, final[key]), key
    # and refitting on the final weights reproduces what was saved
    restored = Npgmf.load_from_checkpoint(checkpoint_path, map_location="cpu")
    restored.fit_normalization([datamodule.val_dataloader()])
    for key, value in _normaliser_state(restored.state_dict()).items():
        torch.testing.assert_close(value, fitted[1][key])


def test_a_run_that_never_validates_still_writes_a_calibrated_checkpoint(data, tmp_path, fit_npgmf):
    from anomalib_npgmf.data import MVTecLOCORegions

    datamodule = MVTecLOCORegions(
        root=data / "loco", category="demo_box", num_workers=0, train_batch_size=4, eval_batch_size=4
    )
    _, engine = _train(datamodule, tmp_path, fit_npgmf, max_epochs=1, check_val_every_n_epoch=10)
    path = Path(engine.trainer.checkpoint_callback.best_model_path)
    assert path.is_file()
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    flags = [value for key, value in state.items() if key.endswith("_norm.fitted")]
    assert flags and all(bool(flag) for flag in flags)


def test_with_one_training_image_the_fit_reads_it_not_the_test_set(data):
    """Nothing can be held out of a single image: calibrate on the training image, never fall back to the test set."""
    from anomalib.data import MVTecAD

    from anomalib_npgmf.models.common.calibration import hold_out_normals

    datamodule = MVTecAD(root=data / "ad", category="ad_box", num_workers=0)
    datamodule.setup()
    datamodule.train_data = datamodule.train_data.subsample([0])
    calibration = hold_out_normals(datamodule)
    assert calibration is datamodule.train_data
    assert len(datamodule.train_data) == 1
