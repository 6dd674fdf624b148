import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from anomalib_npgmf.data import generate_demo_dataset
from anomalib_npgmf.data.scenes import SCENES

SMALL = {"n_train": 4, "n_val": 2, "n_test_good": 3, "n_test_per_defect": 2}


def _digest(folder):
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*.png")):
        h.update(str(path.relative_to(folder)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    return generate_demo_dataset(tmp_path_factory.mktemp("box"), "demo_box", seed=3, **SMALL)


def test_layout_and_counts(box):
    assert len(list((box / "train/good").glob("*.png"))) == 4
    assert len(list((box / "validation/good").glob("*.png"))) == 2
    assert len(list((box / "test/good").glob("*.png"))) == 3
    logical = [d for d in SCENES["box"].defects if d.kind == "logical"]
    structural = [d for d in SCENES["box"].defects if d.kind == "structural"]
    assert len(logical) >= 5
    assert len(structural) >= 3
    assert len(list((box / "test/logical_anomalies").glob("*.png"))) == 2 * len(logical)
    assert len(list((box / "test/structural_anomalies").glob("*.png"))) == 2 * len(structural)
    for image in (box / "test/logical_anomalies").glob("*.png"):
        assert (box / "ground_truth/logical_anomalies" / image.stem / "000.png").is_file()


def test_masks_match_image_size_and_config_pixel_values(box):
    config = {entry["pixel_value"]: entry for entry in json.loads((box / "defects_config.json").read_text())}
    types = json.loads((box / "defect_types.json").read_text())
    for mask_path in (box / "ground_truth").rglob("*.png"):
        mask = np.asarray(Image.open(mask_path))
        image = box / "test" / mask_path.parent.parent.name / f"{mask_path.parent.name}.png"
        assert mask.shape == Image.open(image).size[::-1]
        values = set(np.unique(mask)) - {0}
        assert len(values) == 1
        value = values.pop()
        assert value in config
        key = f"test/{mask_path.parent.parent.name}/{mask_path.parent.name}"
        assert config[value]["defect_name"] == types[key]
    assert set(types.values()) == {entry["defect_name"] for entry in config.values()}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, box):
    again = generate_demo_dataset(tmp_path / "a", "demo_box", seed=3, **SMALL)
    other = generate_demo_dataset(tmp_path / "b", "demo_box", seed=4, **SMALL)
    assert _digest(again) == _digest(box)
    assert _digest(other) != _digest(box)


def test_objects_move_between_normal_images(box):
    images = np.stack([np.asarray(Image.open(p), float) for p in sorted((box / "train/good").glob("*.png"))])
    # free placement: normal images differ a lot more than sensor noise would make them
    assert np.abs(images[0] - images[1]).mean() > 10


def test_rerun_is_a_no_op_and_different_parameters_need_overwrite(box):
    before = (box / "train/good/000.png").stat().st_mtime_ns
    generate_demo_dataset(box.parent, "demo_box", seed=3, **SMALL)
    assert (box / "train/good/000.png").stat().st_mtime_ns == before
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_demo_dataset(box.parent, "demo_box", seed=5, **SMALL)


def test_pins_scene_has_its_own_defects(tmp_path):
    folder = generate_demo_dataset(tmp_path, "demo_pins", scene="pins", **SMALL)
    names = {e["defect_name"] for e in json.loads((folder / "defects_config.json").read_text())}
    assert {"empty_cell", "double_pin", "broken_pin"} <= names


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scene": "nope"}, "scene"),
        ({"image_size": 16}, "image_size"),
        ({"n_train": 0}, "counts"),
        ({"category": "a/b"}, "category"),
    ],
)
def test_bad_parameters_are_named(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_demo_dataset(tmp_path, **{"category": "c", **kwargs})


def test_cli_prints_a_summary(tmp_path, capsys):
    from anomalib_npgmf.cli import main

    assert (
        main(
            [
                "generate",
                "--root",
                str(tmp_path),
                "--category",
                "x",
                "--n-train",
                "3",
                "--n-val",
                "1",
                "--n-test-good",
                "1",
                "--n-test-per-defect",
                "1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "test/logical_anomalies" in out
    assert str(tmp_path / "x") in out
