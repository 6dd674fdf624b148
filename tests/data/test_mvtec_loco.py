import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from anomalib_npgmf.data import MVTecLOCORegions, anomaly_type_of, generate_demo_dataset, load_defect_regions


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("loco")
    generate_demo_dataset(root, "demo_box", n_train=6, n_val=2, n_test_good=3, n_test_per_defect=1)
    return root


def test_anomalib_datamodule_still_crashes_on_pandas_3(root):
    """If this starts failing, anomalib fixed its MVTecLOCO and ours may defer to it."""
    import pandas as pd
    from anomalib.data import MVTecLOCO as AnomalibMVTecLOCO

    datamodule = AnomalibMVTecLOCO(root=root, category="demo_box", num_workers=0)
    if int(pd.__version__.split(".")[0]) >= 3:
        with pytest.raises(TypeError):
            datamodule.setup()
    else:  # the crash is specific to pandas 3: on pandas 2 anomalib's own loader reads our data
        datamodule.setup()
        assert len(datamodule.test_data) == 11


def test_our_datamodule_loads_every_split(root):
    datamodule = MVTecLOCORegions(root=root, category="demo_box", num_workers=0, eval_batch_size=4, train_batch_size=3)
    datamodule.setup()
    assert (len(datamodule.train_data), len(datamodule.val_data), len(datamodule.test_data)) == (6, 2, 11)
    batch = next(iter(datamodule.train_dataloader()))
    assert tuple(batch.image.shape) == (3, 3, 128, 128)
    labels = [int(datamodule.test_data[i].gt_label) for i in range(len(datamodule.test_data))]
    assert labels.count(0) == 3
    anomalous = next(i for i, label in enumerate(labels) if label == 1)
    assert datamodule.test_data[anomalous].gt_mask.any()
    assert datamodule.test_data.anomaly_type(anomalous) in {"logical", "structural"}
    regions = datamodule.test_data.defect_regions(anomalous)
    union = np.any([r.mask for r in regions], axis=0)
    assert np.array_equal(union, datamodule.test_data[anomalous].gt_mask.numpy().astype(bool))
    good = labels.index(0)
    assert datamodule.test_data.anomaly_type(good) == "good"
    assert datamodule.test_data.defect_regions(good) == []


def test_anomaly_types_and_regions(root):
    folder = root / "demo_box"
    assert anomaly_type_of(folder / "test/good/000.png") == "good"
    assert anomaly_type_of(folder / "test/logical_anomalies/000.png") == "logical"
    assert anomaly_type_of(folder / "test/structural_anomalies/000.png") == "structural"
    assert load_defect_regions(folder / "test/good/000.png") == []
    config = {e["defect_name"]: e for e in json.loads((folder / "defects_config.json").read_text())}
    types = json.loads((folder / "defect_types.json").read_text())
    for key, defect in types.items():
        regions = load_defect_regions(folder / f"{key}.png")
        assert regions
        for region in regions:
            area = float(region.mask.sum())
            entry = config[region.defect_name]
            expected = (
                entry["saturation_threshold"] * area
                if entry["relative_saturation"]
                else min(entry["saturation_threshold"], area)
            )
            # threshold x pixel count in float64 on both sides: approx's default is plenty
            assert region.saturation_area == pytest.approx(expected)
        assert defect in {r.defect_name for r in regions}
    with pytest.raises(ValueError, match="label folder"):
        anomaly_type_of(folder / "elsewhere/000.png")


def test_missing_folders_and_bad_ground_truth_are_named(root, tmp_path):
    with pytest.raises(FileNotFoundError, match="category folder"):
        MVTecLOCORegions(root=root, category="nope", num_workers=0).setup()
    copy = tmp_path / "copy"
    shutil.copytree(root / "demo_box", copy / "demo_box")
    image = copy / "demo_box/test/logical_anomalies/000.png"
    mask = copy / "demo_box/ground_truth/logical_anomalies/000/000.png"
    Image.fromarray(np.zeros((10, 10), np.uint8) + 241).save(mask)
    with pytest.raises(ValueError, match=r"mask .* is 10x10"):
        load_defect_regions(image)
    Image.fromarray(np.full((128, 128), 99, np.uint8)).save(mask)
    with pytest.raises(ValueError, match="pixel value 99"):
        load_defect_regions(image)
    (copy / "demo_box/defects_config.json").write_text('[{"defect_name": "x"}]')
    with pytest.raises(ValueError, match="entry 0"):
        load_defect_regions(image)
    shutil.rmtree(copy / "demo_box/ground_truth/logical_anomalies/000")
    with pytest.raises(FileNotFoundError, match="no ground-truth mask for"):
        MVTecLOCORegions(root=copy, category="demo_box", num_workers=0).setup()
    for png in (copy / "demo_box/train/good").glob("*.png"):
        png.unlink()
    shutil.rmtree(copy / "demo_box/test")
    with pytest.raises(FileNotFoundError, match="training folder"):
        MVTecLOCORegions(root=copy, category="demo_box", num_workers=0).setup()


def test_batches_are_anomalib_image_batches_and_validation_is_normal_only(root):
    from anomalib.data import ImageBatch

    datamodule = MVTecLOCORegions(root=root, category="demo_box", num_workers=0, eval_batch_size=11)
    datamodule.setup()
    batch = next(iter(datamodule.test_dataloader()))
    assert isinstance(batch, ImageBatch)
    assert tuple(batch.image.shape) == (11, 3, 128, 128)
    assert tuple(batch.gt_mask.shape) == (11, 128, 128)
    types = [anomaly_type_of(path) for path in batch.image_path]
    assert sorted(types) == ["good"] * 3 + ["logical"] * 5 + ["structural"] * 3
    assert [int(label) for label in batch.gt_label] == [int(t != "good") for t in types]
    for mask, kind in zip(batch.gt_mask, types, strict=True):
        assert bool(mask.any()) == (kind != "good")
    val_labels = [int(datamodule.val_data[i].gt_label) for i in range(len(datamodule.val_data))]
    assert val_labels == [0, 0]


def _hand_made_category(folder, config, masks):
    """A 10x10 LOCO category with one logical test image whose regions are ``masks`` (value arrays)."""
    for split in ("train/good", "validation/good", "test/good"):
        (folder / split).mkdir(parents=True)
        Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(folder / split / "000.png")
    (folder / "test/logical_anomalies").mkdir(parents=True)
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(folder / "test/logical_anomalies/000.png")
    (folder / "ground_truth/logical_anomalies/000").mkdir(parents=True)
    for number, mask in enumerate(masks):
        Image.fromarray(mask.astype(np.uint8)).save(folder / f"ground_truth/logical_anomalies/000/{number:03d}.png")
    (folder / "defects_config.json").write_text(json.dumps(config))
    return folder / "test/logical_anomalies/000.png"


def test_saturation_areas_relative_and_absolute_by_hand(tmp_path):
    config = [
        {"defect_name": "half", "pixel_value": 10, "saturation_threshold": 0.5, "relative_saturation": True},
        {"defect_name": "capped", "pixel_value": 20, "saturation_threshold": 10, "relative_saturation": False},
    ]
    relative = np.zeros((10, 10)), np.zeros((10, 10)), np.zeros((10, 10))
    relative[0][0:3, 0:4] = 10  # 12 px, relative 0.5 -> 6
    relative[1][5:9, 5:9] = 20  # 16 px, absolute 10 -> min(10, 16) = 10
    relative[2][9, 0:4] = 20  # 4 px, absolute 10 -> min(10, 4) = 4
    image = _hand_made_category(tmp_path / "cat", config, relative)
    regions = load_defect_regions(image)
    assert [(r.defect_name, r.pixel_value, int(r.mask.sum()), r.saturation_area) for r in regions] == [
        ("half", 10, 12, 6.0),
        ("capped", 20, 16, 10.0),
        ("capped", 20, 4, 4.0),
    ]
    assert regions[0].mask.dtype == bool
    assert regions[0].mask.shape == (10, 10)
    datamodule = MVTecLOCORegions(root=tmp_path, category="cat", num_workers=0)
    datamodule.setup()
    (item,) = [datamodule.test_data[i] for i in range(2) if int(datamodule.test_data[i].gt_label) == 1]
    assert int(item.gt_mask.sum()) == 12 + 16 + 4


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ({"defect_name": "x", "pixel_value": 10, "saturation_threshold": 1.5, "relative_saturation": True}, "<= 1"),
        ({"defect_name": "x", "pixel_value": 10, "saturation_threshold": 0, "relative_saturation": False}, "> 0"),
        ({"defect_name": "x", "pixel_value": 300, "saturation_threshold": 1, "relative_saturation": True}, "1-255"),
        ({"defect_name": "x", "pixel_value": 10, "saturation_threshold": True, "relative_saturation": True}, "mistype"),
        ({"defect_name": "x", "pixel_value": "10", "saturation_threshold": 1, "relative_saturation": True}, "mistype"),
        ({"defect_name": "x", "pixel_value": 10, "saturation_threshold": 1}, "relative_saturation"),
        ({"defect_name": "dup", "pixel_value": 7, "saturation_threshold": 1, "relative_saturation": True}, "reuses"),
    ],
)
def test_malformed_defects_config_names_file_and_entry(tmp_path, entry, match):
    good = {"defect_name": "ok", "pixel_value": 7, "saturation_threshold": 1.0, "relative_saturation": True}
    mask = np.zeros((10, 10))
    mask[0, 0] = 7
    image = _hand_made_category(tmp_path / "cat", [good, entry], [mask])
    with pytest.raises(ValueError, match=r"defects_config\.json: entry 1") as error:
        load_defect_regions(image)
    assert re.search(match, str(error.value))


def test_defects_config_that_is_no_list_or_no_json(tmp_path):
    mask = np.zeros((10, 10))
    mask[0, 0] = 7
    image = _hand_made_category(tmp_path / "cat", {"defect_name": "x"}, [mask])
    with pytest.raises(ValueError, match="must hold a list"):
        load_defect_regions(image)
    (tmp_path / "cat/defects_config.json").write_text("[{")
    with pytest.raises(ValueError, match=r"cannot read .*defects_config\.json"):
        load_defect_regions(image)
    (tmp_path / "cat/defects_config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"defects_config\.json is missing"):
        load_defect_regions(image)


def test_a_mask_of_another_size_is_named_when_loading_items(tmp_path):
    config = [{"defect_name": "x", "pixel_value": 7, "saturation_threshold": 1.0, "relative_saturation": True}]
    image = _hand_made_category(tmp_path / "cat", config, [np.full((12, 10), 7)])
    datamodule = MVTecLOCORegions(root=tmp_path, category="cat", num_workers=0)
    datamodule.setup()
    index = next(i for i in range(len(datamodule.test_data)) if "logical" in datamodule.test_data.samples.image_path[i])
    with pytest.raises(ValueError, match=r"mask .*000/000\.png is 10x12, its image .*000\.png is 10x10"):
        datamodule.test_data[index]
    with pytest.raises(ValueError, match="is 10x12"):
        load_defect_regions(image)


def test_missing_root_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="root folder"):
        MVTecLOCORegions(root=tmp_path / "nowhere", category="demo_box", num_workers=0).setup()
    (tmp_path / "breakfast_box").mkdir()
    with pytest.raises(FileNotFoundError, match="categories found there: breakfast_box"):
        MVTecLOCORegions(root=tmp_path, category="pushpins", num_workers=0).setup()


def test_usable_from_the_anomalib_cli_parser(root):
    """``--data anomalib_npgmf.data.MVTecLOCORegions --data.root ... --data.category ...``: anomalib's CLI reads it."""
    from anomalib.data import AnomalibDataModule
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_subclass_arguments(AnomalibDataModule, "data")
    config = parser.parse_args(
        ["--data", "anomalib_npgmf.data.MVTecLOCORegions", "--data.root", str(root), "--data.category", "demo_box"]
    )
    datamodule = parser.instantiate_classes(config).data
    assert isinstance(datamodule, MVTecLOCORegions)
    datamodule.num_workers = 0
    datamodule.setup()
    assert len(datamodule.test_data) == 11
