import hashlib
import json
import subprocess
import sys

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


def _centroid(mask):
    rows, cols = np.nonzero(mask)
    return rows.mean(), cols.mean()


def test_objects_are_placed_freely_not_at_fixed_positions(tmp_path):
    folder = generate_demo_dataset(tmp_path, "box", n_train=12, n_val=1, n_test_good=1, n_test_per_defect=1)
    bars, circles = [], []
    for path in sorted((folder / "train/good").glob("*.png")):
        rgb = np.asarray(Image.open(path)).astype(int)
        red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        bars.append(_centroid((blue > red + 80) & (blue > green + 80)))  # the blue bar
        circles.append(_centroid((red > blue + 120) & (green > blue + 40) & (np.arange(128) < 64)))  # orange, left
    bars, circles = np.array(bars), np.array(circles)
    # sizes and positions drawn at random: the objects' centres spread over many pixels in both axes
    assert bars[:, 0].std() > 5
    assert bars[:, 1].std() > 3
    assert circles[:, 0].std() > 5
    assert circles[:, 1].std() > 2
    assert len({(round(r), round(c)) for r, c in bars}) == len(bars)  # no two images share the bar position


def test_every_defect_kind_has_images_and_masks_with_its_pixel_value(box):
    config = json.loads((box / "defects_config.json").read_text())
    types = json.loads((box / "defect_types.json").read_text())
    assert sorted(types.values()) == sorted(entry["defect_name"] for entry in config for _ in range(2))
    for key, defect in types.items():
        value = next(entry["pixel_value"] for entry in config if entry["defect_name"] == defect)
        masks = sorted((box / "ground_truth" / key.split("/")[1] / key.split("/")[2]).glob("*.png"))
        assert masks
        assert any(value in np.unique(np.asarray(Image.open(m))) for m in masks)


def test_defects_config_has_the_loco_format(box):
    config = json.loads((box / "defects_config.json").read_text())
    assert isinstance(config, list)
    for entry in config:
        assert set(entry) == {"defect_name", "pixel_value", "saturation_threshold", "relative_saturation"}
        assert isinstance(entry["relative_saturation"], bool)
        assert 1 <= entry["pixel_value"] <= 255
    missing = next(e for e in config if e["defect_name"] == "missing_circle")
    assert missing == {
        "defect_name": "missing_circle",
        "pixel_value": 241,
        "saturation_threshold": 300,  # absolute, in pixels at 128 px
        "relative_saturation": False,
    }
    assert len({e["pixel_value"] for e in config}) == len(config)


def test_absolute_saturation_scales_with_the_image_area(tmp_path):
    counts = {"n_train": 2, "n_val": 1, "n_test_good": 1, "n_test_per_defect": 1}
    folder = generate_demo_dataset(tmp_path, "big", image_size=256, **counts)
    config = {e["defect_name"]: e for e in json.loads((folder / "defects_config.json").read_text())}
    assert config["missing_circle"]["saturation_threshold"] == 1200  # 300 px at 128 px -> 4x the area
    assert config["scratch"]["saturation_threshold"] == 1.0
    assert Image.open(folder / "test/good/000.png").size == (256, 256)


def test_incomplete_generation_is_not_reused_and_overwrite_restores_it(tmp_path):
    folder = generate_demo_dataset(tmp_path, "c", seed=1, **SMALL)
    digest = _digest(folder)
    (folder / "test/good/001.png").unlink()
    with pytest.raises(FileExistsError, match="not a complete generation"):
        generate_demo_dataset(tmp_path, "c", seed=1, **SMALL)
    generate_demo_dataset(tmp_path, "c", seed=1, overwrite=True, **SMALL)
    assert _digest(folder) == digest
    assert [p.name for p in tmp_path.iterdir()] == ["c"]  # no temporary folders left behind


def test_overwrite_replaces_a_foreign_folder(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"no readable generation\.json"):
        generate_demo_dataset(tmp_path, "c", **SMALL)
    assert (tmp_path / "c" / "notes.txt").is_file()
    folder = generate_demo_dataset(tmp_path, "c", overwrite=True, **SMALL)
    assert not (folder / "notes.txt").exists()
    assert (folder / "generation.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_a_failed_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    from anomalib_npgmf.data import layouts

    def broken_render(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(layouts, "render", broken_render)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_demo_dataset(tmp_path, "c", **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_a_concurrent_identical_generation_is_kept(tmp_path):
    """Two processes (e.g. DDP ranks) generating the same data: the later one keeps the earlier one's folder."""
    from anomalib_npgmf.data.layouts import write_category
    from anomalib_npgmf.data.synthetic import _checked_parameters, _move_into_place

    parameters = _checked_parameters("c", 128, 4, 2, 3, 2, 0, "box", "mvtec_loco")
    target = generate_demo_dataset(tmp_path, "c", seed=0, **SMALL)  # the other process finished first
    before = (target / "generation.json").stat().st_mtime_ns
    staging = tmp_path / ".c.staging"
    write_category(staging, parameters)
    _move_into_place(staging, target, parameters)
    assert (target / "generation.json").stat().st_mtime_ns == before
    assert _holds_generation_files(target)


def _holds_generation_files(folder):
    return (folder / "defects_config.json").is_file() and len(list((folder / "train/good").glob("*.png"))) == 4


def test_mvtec_ad_layout(tmp_path):
    folder = generate_demo_dataset(tmp_path, "ad", layout="mvtec_ad", seed=2, **SMALL)
    defects = [d.name for d in SCENES["box"].defects]
    assert sorted(p.name for p in (folder / "test").iterdir()) == sorted([*defects, "good"])
    assert not (folder / "validation").exists()
    assert not (folder / "defects_config.json").exists()
    assert len(list((folder / "train/good").glob("*.png"))) == 4
    for defect in defects:
        images = sorted((folder / "test" / defect).glob("*.png"))
        assert [p.name for p in images] == ["000.png", "001.png"]
        for image in images:
            mask = np.asarray(Image.open(folder / "ground_truth" / defect / f"{image.stem}_mask.png"))
            assert mask.shape == (128, 128)
            assert set(np.unique(mask)) == {0, 255}
    types = json.loads((folder / "defect_types.json").read_text())
    assert types["test/scratch/001"] == "scratch"
    # a LOCO-layout generation with the same seed is a different dataset, and re-running is a no-op
    assert generate_demo_dataset(tmp_path, "ad", layout="mvtec_ad", seed=2, **SMALL) == folder
    with pytest.raises(FileExistsError):
        generate_demo_dataset(tmp_path, "ad", seed=2, **SMALL)


def test_generator_module_does_not_import_torch():
    """``anomalib-npgmf generate`` must start fast: the generator needs numpy/OpenCV, not anomalib or torch."""
    code = "import sys, anomalib_npgmf.data.synthetic\nprint(sorted({'torch', 'anomalib'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"


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
        ({"category": ".hidden"}, "category"),
        ({"layout": "folder"}, "layout"),
        ({"seed": 1.5}, "seed"),
        ({"image_size": 4096}, "image_size"),
        ({"image_size": (1600, 32)}, "image_size"),
        ({"defects": ["scratch", "nope"]}, "defects"),
        ({"structural_regions": 0}, "structural_regions"),
    ],
)
def test_bad_parameters_are_named(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_demo_dataset(tmp_path, **{"category": "c", **kwargs})


def test_cli_prints_a_summary(tmp_path, capsys):
    from anomalib_npgmf.cli import main

    argv = ["generate", "--root", str(tmp_path), "--category", "x", "--n-train", "3", "--n-val", "1"]
    argv += ["--n-test-good", "1", "--n-test-per-defect", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "x") in out
    assert "reused" not in out
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.strip()}
    assert lines["train/good"][1] == "3"
    assert lines["test/logical_anomalies"][1] == "10"  # 5 logical kinds x 2
    assert lines["test/structural_anomalies"][1] == "6"
    assert "structural contamination 2 images" in " ".join(out.split())
    assert main(argv) == 0
    assert "reused" in capsys.readouterr().out
    assert main([*argv[:-1], "3"]) == 1  # a different generation is in the way: one-line error, exit 1
    assert "--overwrite" in capsys.readouterr().err


def test_cli_layout_and_scene_flags(tmp_path, capsys):
    from anomalib_npgmf.data.synthetic import main_generate

    argv = ["--root", str(tmp_path), "--category", "p", "--scene", "pins", "--layout", "mvtec_ad", "--n-train", "2"]
    assert main_generate([*argv, "--n-val", "1", "--n-test-good", "1", "--n-test-per-defect", "1"]) == 0
    out = capsys.readouterr().out
    assert "test/empty_cell" in out
    assert (tmp_path / "p/ground_truth/double_pin/000_mask.png").is_file()


TINY = {"n_train": 2, "n_val": 1, "n_test_good": 1, "n_test_per_defect": 1}


def test_loco_at_real_sizes_with_several_masks_per_image(tmp_path):
    from anomalib_npgmf.data import load_defect_regions

    for size in ((1600, 1100), (800, 1600)):
        folder = generate_demo_dataset(
            tmp_path / f"{size[0]}",
            "screw_bag",
            image_size=size,
            defects=["missing_circle", "scratch"],
            structural_regions=2,
            **TINY,
        )
        images = sorted(folder.rglob("*.png"))
        assert {Image.open(p).size for p in images if "ground_truth" not in p.parts} == {size}
        masks = sorted((folder / "ground_truth/structural_anomalies/000").glob("*.png"))
        assert [p.name for p in masks] == ["000.png", "001.png"]
        regions = load_defect_regions(folder / "test/structural_anomalies/000.png")
        assert len(regions) == 2
        assert all(r.mask.shape == size[::-1] and r.defect_name == "scratch" for r in regions)
        assert not np.array_equal(regions[0].mask, regions[1].mask)
        assert len(list((folder / "test/logical_anomalies").glob("*.png"))) == 1
        assert json.loads((folder / "generation.json").read_text())["image_size"] == list(size)
    config = {e["defect_name"]: e for e in json.loads((folder / "defects_config.json").read_text())}
    assert config["missing_circle"]["saturation_threshold"] == round(300 * 800 * 1600 / 128**2)


def test_older_parameters_keep_their_record_and_bytes(tmp_path):
    """Square sizes and the default options write the record (and draw the images) as before."""
    folder = generate_demo_dataset(tmp_path / "a", "c", image_size=(96, 96), seed=4, **TINY)
    record = json.loads((folder / "generation.json").read_text())
    assert record["image_size"] == 96
    assert not {"defects", "structural_regions", "layout"} & set(record)
    again = generate_demo_dataset(tmp_path / "b", "c", image_size=96, seed=4, **TINY)
    assert _digest(folder) == _digest(again)


def test_mvtec_ad_at_real_sizes(tmp_path):
    for side in (1024, 700):
        folder = generate_demo_dataset(
            tmp_path / str(side), "bottle", image_size=side, layout="mvtec_ad", defects=["scratch"], **TINY
        )
        assert sorted(p.name for p in (folder / "test").iterdir()) == ["good", "scratch"]
        mask = Image.open(folder / "ground_truth/scratch/000_mask.png")
        assert mask.size == Image.open(folder / "test/scratch/000.png").size == (side, side)


def test_visa_layout_reads_with_anomalibs_visa_datamodule(tmp_path):
    from anomalib.data import Visa

    root = tmp_path / "visa"
    folder = generate_demo_dataset(
        root / "visa_pytorch",
        "candle",
        image_size=(1284, 1168),
        layout="visa",
        defects=["extra_circle", "contamination"],
        n_train=3,
        n_val=1,
        n_test_good=2,
        n_test_per_defect=2,
    )
    assert sorted(p.name for p in (folder / "train/good").iterdir()) == ["0000.JPG", "0001.JPG", "0002.JPG"]
    assert sorted(p.name for p in (folder / "test/good").iterdir()) == ["0003.JPG", "0004.JPG"]
    assert sorted(p.name for p in (folder / "test/bad").iterdir()) == [f"00{i}.JPG" for i in range(4)]
    mask = np.asarray(Image.open(folder / "ground_truth/bad/003.png"))
    assert mask.shape == (1168, 1284, 3)
    assert set(np.unique(mask)) == {0, 255}
    assert json.loads((folder / "defect_types.json").read_text())["test/bad/003"] == "contamination"
    datamodule = Visa(root=root, category="candle", num_workers=0)
    datamodule.prepare_data()  # finds visa_pytorch/candle: no download
    datamodule.setup()
    assert len(datamodule.train_data) == 3
    test = datamodule.test_data.samples
    assert sorted(test.label_index.tolist()) == [0, 0, 1, 1, 1, 1]
    item = datamodule.test_data[int(test.index[test.label_index == 1][0])]
    assert item.gt_mask.shape[-2:] == (1168, 1284)
    assert bool(item.gt_mask.any())


def test_cli_real_size_layout_and_defect_flags(tmp_path, capsys):
    from anomalib_npgmf.data.synthetic import main_generate

    argv = ["--root", str(tmp_path), "--category", "v", "--layout", "visa", "--image-size", "160x96", "--n-train", "2"]
    argv += ["--n-test-good", "1", "--n-test-per-defect", "2", "--defects", "scratch", "extra_circle"]
    assert main_generate(argv) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "test/bad 4 images" in out
    assert "scratch 2 images" in out
    assert "missing_circle" not in out  # only the chosen defect kinds
    assert Image.open(tmp_path / "v/test/bad/000.JPG").size == (160, 96)
    with pytest.raises(SystemExit):
        main_generate([*argv[:6], "--image-size", "160x"])


# ---------------------------------------------------------------------- screws: the held-out hard case (issue 18)
SCREWS_NAMES = [spec.name for spec in SCENES["screws"].defects]


@pytest.mark.parametrize("defect", [None, *SCREWS_NAMES])
def test_screws_rules_hold_on_normals_and_each_defect_breaks_exactly_its_rule(defect):
    from anomalib_npgmf.data.screws import screws_violations

    surface_only = {"scratch", "contamination"}  # drawn on top of a tray that keeps every part rule
    for seed in range(25):
        parts = scenes_plan(seed, defect)
        expected = set() if defect is None or defect in surface_only else {defect}
        assert screws_violations(parts) == expected, (seed, [(p.kind, round(p.length, 1)) for p in parts])


def scenes_plan(seed, defect):
    from anomalib_npgmf.data.screws import plan_screws

    return plan_screws(np.random.default_rng(seed), defect)


def _part_components(defect, seed):
    """Connected blobs of part colour (steel or brass) in a clean drawing of one tray."""
    from anomalib_npgmf.data.canvas import Canvas
    from anomalib_npgmf.data.screws import draw_screws

    canvas = Canvas(128)
    draw_screws(canvas, np.random.default_rng(seed), defect)
    image = canvas.image
    steel = image[..., 2] - image[..., 0] > -5  # the tray and its rim are red-heavy; steel is bluish
    brass = (image[..., 0] - image[..., 2] > 100) & (image[..., 1] > 120)
    count, _ = cv2_components(steel | brass)
    return count


def cv2_components(mask):
    import cv2

    count, labels = cv2.connectedComponents(mask.astype(np.uint8))
    return count - 1, labels


@pytest.mark.parametrize(("defect", "parts"), [(None, 8), ("missing_part", 7), ("extra_part", 9), ("wrong_kind", 8)])
def test_screws_parts_are_separate_and_countable_in_the_pixels(defect, parts):
    assert [_part_components(defect, seed) for seed in range(6)] == [parts] * 6


def test_screws_parts_have_no_place_so_a_per_cell_count_cannot_see_a_missing_one():
    counts, octants = [], set()
    for seed in range(120):
        parts = scenes_plan(seed, None)
        counts.append(sum(part.x < 64 and part.y < 64 for part in parts))
        octants |= {int(part.angle // (np.pi / 4)) for part in parts if part.length}
    assert octants == set(range(8))  # bolts lie at any angle
    # normal trays put 0 to 4 parts in one quadrant: one part more or less there is within the normal spread
    assert len(set(counts)) >= 4
    assert np.std(counts) > 0.7


@pytest.fixture(scope="module")
def screws(tmp_path_factory):
    return generate_demo_dataset(tmp_path_factory.mktemp("screws"), "demo_screws", scene="screws", seed=3, **SMALL)


def test_screws_writes_every_defect_with_non_empty_masks_and_loco_config(screws):
    config = {e["defect_name"]: e for e in json.loads((screws / "defects_config.json").read_text())}
    assert list(config) == SCREWS_NAMES
    assert config["missing_part"] == {
        "defect_name": "missing_part",
        "pixel_value": 221,
        "saturation_threshold": 120,  # absolute: about one part's area at 128 px
        "relative_saturation": False,
    }
    assert all(
        e["relative_saturation"] and e["saturation_threshold"] == 1.0 for n, e in config.items() if n != "missing_part"
    )
    types = json.loads((screws / "defect_types.json").read_text())
    assert sorted(types.values()) == sorted(SCREWS_NAMES * 2)
    for key, defect in types.items():
        masks = sorted((screws / "ground_truth" / key.split("/")[1] / key.split("/")[2]).glob("*.png"))
        values = [np.asarray(Image.open(m)) for m in masks]
        assert values and all(v.any() for v in values)
        assert {int(v.max()) for v in values} == {config[defect]["pixel_value"]}
    missing = [k for k, d in types.items() if d == "missing_part"]
    for key in missing:  # LOCO marks where the missing part could have been: the whole tray
        mask = np.asarray(Image.open(screws / "ground_truth" / key.split("/", 1)[1] / "000.png"))
        assert (mask > 0).mean() > 0.6


def test_screws_same_seed_same_bytes_other_seed_other_bytes(tmp_path, screws):
    again = generate_demo_dataset(tmp_path / "a", "demo_screws", scene="screws", seed=3, **SMALL)
    other = generate_demo_dataset(tmp_path / "b", "demo_screws", scene="screws", seed=4, **SMALL)
    assert _digest(again) == _digest(screws)
    assert _digest(other) != _digest(screws)


def test_cli_generates_the_screws_scene(tmp_path, capsys):
    from anomalib_npgmf.data.synthetic import main_generate

    argv = ["--root", str(tmp_path), "--category", "s", "--scene", "screws", "--n-train", "2", "--n-val", "1"]
    assert main_generate([*argv, "--n-test-good", "1", "--n-test-per-defect", "1", "--defects", "wrong_kind"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "logical wrong_kind 1 images" in out
    assert json.loads((tmp_path / "s/generation.json").read_text())["scene"] == "screws"
