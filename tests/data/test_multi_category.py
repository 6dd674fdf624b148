import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomalib_npgmf.data import MultiCategory, generate_demo_dataset

SMALL = {"n_train": 6, "n_val": 2, "n_test_good": 3, "n_test_per_defect": 1}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Two LOCO-layout categories under one root, and an MVTec-AD-layout category under another."""
    base = tmp_path_factory.mktemp("multi")
    generate_demo_dataset(base / "loco", "demo_box", scene="box", seed=0, **SMALL)
    generate_demo_dataset(base / "loco", "demo_pins", scene="pins", seed=1, **SMALL)
    generate_demo_dataset(base / "ad", "ad_box", scene="box", seed=2, layout="mvtec_ad", **SMALL)
    return base


def _datamodule(**kwargs):
    return MultiCategory(num_workers=0, eval_batch_size=64, train_batch_size=64, **kwargs)


def test_two_loco_categories_in_one_datamodule(roots):
    datamodule = _datamodule(root=roots / "loco", categories=["demo_box", "demo_pins"])
    datamodule.setup()
    assert datamodule.categories == ["demo_box", "demo_pins"]
    # 6 train, 2 validation (LOCO's own), 3 good + 8 defect test images per category
    assert (len(datamodule.train_data), len(datamodule.val_data), len(datamodule.test_data)) == (12, 4, 22)
    assert datamodule.name == "loco"  # the common parent: anomalib's saved images keep "<category>/test/..."
    batch = next(iter(datamodule.test_dataloader()))
    assert tuple(batch.image.shape) == (22, 3, 128, 128)
    assert tuple(batch.gt_mask.shape) == (22, 128, 128)
    categories = [datamodule.category_of(path) for path in batch.image_path]
    assert categories == [Path(path).parents[2].name for path in batch.image_path]
    assert categories.count("demo_box") == categories.count("demo_pins") == 11
    anomalous = batch.gt_label.bool()
    assert int(anomalous.sum()) == 16
    assert all(bool(mask.any()) == bool(label) for mask, label in zip(batch.gt_mask, anomalous, strict=True))
    val_batch = next(iter(datamodule.val_dataloader()))
    assert not val_batch.gt_label.any()
    assert sorted(datamodule.category_of(p) for p in val_batch.image_path) == ["demo_box"] * 2 + ["demo_pins"] * 2


def test_loco_and_mvtec_ad_layouts_together(roots):
    datamodule = _datamodule(categories=[str(roots / "loco" / "demo_box"), str(roots / "ad" / "ad_box")])
    datamodule.setup()
    assert datamodule.categories == ["demo_box", "ad_box"]
    assert datamodule.name == roots.name
    # MVTec AD has no validation folder: validation falls back to the test set (anomalib's MVTec AD default)
    assert datamodule.val_split_mode.value == "same_as_test"
    assert len(datamodule.train_data) == 12
    assert len(datamodule.test_data) == len(datamodule.val_data) == 22
    batch = next(iter(datamodule.test_dataloader()))
    for path, label, mask in zip(batch.image_path, batch.gt_label, batch.gt_mask, strict=True):
        if not label:
            assert not mask.any()
            continue
        folder = Path(path).parents[2]
        if datamodule.category_of(path) == "ad_box":  # one <stem>_mask.png per image
            gt_file = folder / "ground_truth" / Path(path).parent.name / f"{Path(path).stem}_mask.png"
            expected = np.asarray(Image.open(gt_file)) > 0
        else:  # LOCO: union of the per-region files
            gt_folder = folder / "ground_truth" / Path(path).parent.name / Path(path).stem
            expected = np.any([np.asarray(Image.open(f)) > 0 for f in sorted(gt_folder.glob("*.png"))], axis=0)
        assert torch.equal(mask, torch.from_numpy(expected))


def test_every_category_under_root_when_none_are_named(roots, tmp_path):
    shutil.copytree(roots / "loco", tmp_path / "loco")
    (tmp_path / "loco" / ".hidden" / "train").mkdir(parents=True)
    (tmp_path / "loco" / "notes").mkdir()
    datamodule = _datamodule(root=tmp_path / "loco")
    assert datamodule.categories == ["demo_box", "demo_pins"]
    assert datamodule.category == "demo_box+demo_pins"


def _train_names(datamodule):
    return {
        category: [Path(p).name for p in datamodule.train_data.samples.image_path if f"/{category}/" in p]
        for category in datamodule.categories
    }


def test_n_shots_first_images_or_a_seeded_choice(roots):
    first = _datamodule(root=roots / "loco", categories=["demo_box", "demo_pins"], n_shots=3)
    first.setup()
    assert _train_names(first) == {
        "demo_box": ["000.png", "001.png", "002.png"],
        "demo_pins": ["000.png", "001.png", "002.png"],
    }
    assert len(first.test_data) == 22  # test set untouched

    def seeded(seed, categories=("demo_box", "demo_pins")):
        datamodule = _datamodule(root=roots / "loco", categories=list(categories), n_shots=3, seed=seed)
        datamodule.setup()
        return _train_names(datamodule)

    chosen = seeded(7)
    assert chosen == seeded(7)  # reproducible
    assert all(len(names) == 3 == len(set(names)) for names in chosen.values())
    assert chosen != seeded(8)
    assert chosen["demo_pins"] == seeded(7, ["demo_pins"])["demo_pins"]  # independent of the other categories


def test_n_shots_larger_than_a_category_is_named(roots):
    datamodule = _datamodule(root=roots / "loco", categories=["demo_box"], n_shots=7)
    with pytest.raises(ValueError, match="n_shots=7, but category demo_box has only 6"):
        datamodule.setup()
    with pytest.raises(ValueError, match="n_shots"):
        _datamodule(root=roots / "loco", categories=["demo_box"], n_shots=0)


def test_bad_categories_are_named(roots, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"category folder .*nope does not exist"):
        _datamodule(root=roots / "loco", categories=["demo_box", "nope"])
    with pytest.raises(ValueError, match=r"data\.root must be set"):
        _datamodule(categories=["demo_box"])
    with pytest.raises(ValueError, match="two categories are named 'demo_box'"):
        _datamodule(categories=[str(roots / "loco" / "demo_box"), str(roots / "loco" / "demo_box")])
    with pytest.raises(ValueError, match="categories is empty"):
        _datamodule(root=roots / "loco", categories=[])
    with pytest.raises(FileNotFoundError, match="root folder"):
        _datamodule(root=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="lies in none of the categories"):
        _datamodule(root=roots / "loco", categories=["demo_box"]).category_of(
            roots / "loco/demo_pins/test/good/000.png"
        )


def test_bad_category_contents_are_named(roots, tmp_path):
    shutil.copytree(roots / "loco" / "demo_box", tmp_path / "box")
    shutil.rmtree(tmp_path / "box/ground_truth/logical_anomalies/002")
    with pytest.raises(FileNotFoundError, match=r"no ground-truth mask for .*logical_anomalies/002\.png"):
        _datamodule(categories=[str(tmp_path / "box")]).setup()
    shutil.rmtree(tmp_path / "box/ground_truth")  # no ground truth at all: image labels only
    datamodule = _datamodule(categories=[str(tmp_path / "box")])
    datamodule.setup()
    assert datamodule.task.value == "classification"
    assert datamodule.test_data[0].gt_mask is None
    for png in (tmp_path / "box/train/good").glob("*.png"):
        png.unlink()
    with pytest.raises(FileNotFoundError, match=r"category box: .*train/good holds no images"):
        _datamodule(categories=[str(tmp_path / "box")]).setup()


def test_validation_from_dir_needs_every_category_to_have_one(roots):
    datamodule = _datamodule(
        categories=[str(roots / "loco" / "demo_box"), str(roots / "ad" / "ad_box")], val_split_mode="from_dir"
    )
    with pytest.raises(FileNotFoundError, match="categories ad_box have no validation/good images"):
        datamodule.setup()


def test_usable_from_the_anomalib_cli_parser(roots):
    """``--data anomalib_npgmf.data.MultiCategory --data.categories [a, b]`` as anomalib's CLI resolves it."""
    from anomalib.data import AnomalibDataModule
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_subclass_arguments(AnomalibDataModule, "data")
    argv = ["--data", "anomalib_npgmf.data.MultiCategory", "--data.root", str(roots / "loco")]
    argv += ["--data.categories", "[demo_box, demo_pins]", "--data.n_shots", "2", "--data.num_workers", "0"]
    datamodule = parser.instantiate_classes(parser.parse_args(argv)).data
    assert isinstance(datamodule, MultiCategory)
    datamodule.setup()
    assert datamodule.categories == ["demo_box", "demo_pins"]
    assert len(datamodule.train_data) == 4
