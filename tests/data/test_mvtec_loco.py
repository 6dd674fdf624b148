import json
import shutil

import numpy as np
import pytest
from PIL import Image

from anomalib_npgmf.data import MVTecLOCO, anomaly_type_of, generate_demo_dataset, load_defect_regions


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
    datamodule = MVTecLOCO(root=root, category="demo_box", num_workers=0, eval_batch_size=4, train_batch_size=3)
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
            assert region.saturation_area == pytest.approx(expected)
        assert defect in {r.defect_name for r in regions}
    with pytest.raises(ValueError, match="label folder"):
        anomaly_type_of(folder / "elsewhere/000.png")


def test_missing_folders_and_bad_ground_truth_are_named(root, tmp_path):
    with pytest.raises(FileNotFoundError, match="category folder"):
        MVTecLOCO(root=root, category="nope", num_workers=0).setup()
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
    with pytest.raises(FileNotFoundError, match="no ground-truth masks"):
        MVTecLOCO(root=copy, category="demo_box", num_workers=0).setup()
    for png in (copy / "demo_box/train/good").glob("*.png"):
        png.unlink()
    shutil.rmtree(copy / "demo_box/test")
    with pytest.raises(FileNotFoundError, match="training folder"):
        MVTecLOCO(root=copy, category="demo_box", num_workers=0).setup()
