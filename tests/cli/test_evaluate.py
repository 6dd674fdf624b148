"""``anomalib-npgmf evaluate`` and ``predict-openvino`` on a trained tiny Npgmf (fixtures in models/npgmf)."""

import csv
import json

import pytest

from anomalib_npgmf.cli import main
from anomalib_npgmf.evaluate import resolve_model_class


def test_resolve_model_class_suggests_the_nearest_name():
    assert resolve_model_class("npgmf").__name__ == "Npgmf"
    assert resolve_model_class("Patchcore").__name__ == "Patchcore"
    with pytest.raises(ValueError, match="Did you mean 'Npgmf'"):
        resolve_model_class("Npgfm")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny Npgmf trained for one epoch on generated data, with its checkpoint."""
    import torch
    from anomalib.engine import Engine

    from anomalib_npgmf import Npgmf
    from anomalib_npgmf.data import MVTecLOCORegions, generate_demo_dataset

    root = tmp_path_factory.mktemp("eval_data")
    generate_demo_dataset(root, "demo_box", n_train=16, n_val=6, n_test_good=6, n_test_per_defect=2)
    torch.manual_seed(0)
    model = Npgmf(
        variant="plus",
        backbone="resnet18",
        pre_trained=False,
        image_size=64,
        bottleneck_channels=32,
        oce_strides=(1, 1),
        codebook_size=16,
        prior_channels=8,
    )
    engine = Engine(
        max_epochs=1, accelerator="cpu", devices=1, default_root_dir=tmp_path_factory.mktemp("run"), logger=False
    )
    datamodule = MVTecLOCORegions(root=root, category="demo_box", num_workers=0, train_batch_size=8, eval_batch_size=8)
    engine.fit(model, datamodule=datamodule)
    exported = engine.export(model, export_type="openvino", export_root=tmp_path_factory.mktemp("export"))
    return root, engine.trainer.checkpoint_callback.best_model_path, exported


def test_evaluate_from_checkpoint_writes_table_and_grids(trained, tmp_path, capsys):
    root, checkpoint, _ = trained
    assert (
        main(
            ["evaluate", "--ckpt", checkpoint, "--root", str(root), "--category", "demo_box", "--output", str(tmp_path)]
        )
        == 0
    )
    report = json.loads((tmp_path / "loco_report.json").read_text())
    assert set(report["table"]) == {"logical", "structural", "mean"}
    for row in report["table"].values():
        assert 0.0 <= row["image_AUROC"] <= 1.0
        assert 0.0 <= row["AU-sPRO"] <= 1.0
    assert (tmp_path / "loco_report.csv").read_text().startswith("anomalies,image_AUROC,AU-sPRO")
    grids = {p.stem for p in (tmp_path / "grids").glob("*.png")}
    assert {"good", "missing_circle", "scratch"} <= grids
    assert "| logical |" in capsys.readouterr().out


def test_evaluate_exported_model_matches_checkpoint(trained, tmp_path):
    root, checkpoint, exported = trained
    assert (
        main(
            [
                "evaluate",
                "--ckpt",
                checkpoint,
                "--root",
                str(root),
                "--category",
                "demo_box",
                "--output",
                str(tmp_path / "ckpt"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "evaluate",
                "--exported",
                str(exported),
                "--root",
                str(root),
                "--category",
                "demo_box",
                "--output",
                str(tmp_path / "ov"),
            ]
        )
        == 0
    )
    from_ckpt = json.loads((tmp_path / "ckpt/loco_report.json").read_text())["table"]
    from_ov = json.loads((tmp_path / "ov/loco_report.json").read_text())["table"]
    for row in from_ckpt:
        assert from_ov[row]["image_AUROC"] == pytest.approx(from_ckpt[row]["image_AUROC"], abs=1e-6)


def test_predict_openvino_writes_heatmaps_and_scores(trained, tmp_path, monkeypatch):
    root, _, exported = trained
    monkeypatch.chdir(tmp_path)  # anomalib's OpenVINOInferencer writes ./openvino_cache
    images = root / "demo_box" / "test" / "good"
    assert (
        main(["predict-openvino", "--model", str(exported), "--input", str(images), "--output", str(tmp_path / "pred")])
        == 0
    )
    rows = list(csv.DictReader((tmp_path / "pred/predictions.csv").open()))
    assert len(rows) == len(list(images.glob("*.png")))
    assert all((tmp_path / "pred/heatmaps" / f"{row['image'].rsplit('/', 1)[1]}").is_file() for row in rows)


def test_cli_errors_are_one_line_and_non_zero(tmp_path, capsys):
    assert (
        main(
            [
                "evaluate",
                "--ckpt",
                str(tmp_path / "missing.ckpt"),
                "--root",
                str(tmp_path),
                "--category",
                "x",
                "--output",
                str(tmp_path / "o"),
            ]
        )
        == 1
    )
    assert "missing.ckpt does not exist" in capsys.readouterr().err
    assert (
        main(
            [
                "predict-openvino",
                "--model",
                str(tmp_path / "m.xml"),
                "--input",
                str(tmp_path),
                "--output",
                str(tmp_path / "o"),
            ]
        )
        == 1
    )


def test_evaluate_works_for_an_anomalib_model(trained, tmp_path):
    """anomalib's own Padim, trained on the same data, evaluated through its checkpoint."""
    from anomalib.engine import Engine
    from anomalib.models import Padim

    from anomalib_npgmf.data import MVTecLOCORegions

    root, _, _ = trained
    model = Padim(backbone="resnet18", pre_trained=False, pre_processor=Padim.configure_pre_processor((64, 64)))
    engine = Engine(max_epochs=1, accelerator="cpu", devices=1, default_root_dir=tmp_path / "run", logger=False)
    engine.fit(
        model,
        datamodule=MVTecLOCORegions(
            root=root, category="demo_box", num_workers=0, train_batch_size=8, eval_batch_size=8
        ),
    )
    checkpoint = engine.trainer.checkpoint_callback.best_model_path
    assert (
        main(
            [
                "evaluate",
                "--ckpt",
                checkpoint,
                "--model",
                "Padim",
                "--root",
                str(root),
                "--category",
                "demo_box",
                "--output",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    table = json.loads((tmp_path / "eval/loco_report.json").read_text())["table"]
    assert 0.0 <= table["mean"]["AU-sPRO"] <= 1.0


def test_evaluate_several_categories_writes_each_table_and_the_mean(trained, tmp_path, capsys):
    """One (unified) model over several LOCO categories: a table per category and the mean over categories."""
    from anomalib_npgmf.data import generate_demo_dataset

    root, checkpoint, _ = trained
    generate_demo_dataset(root, "demo_pins", scene="pins", n_train=2, n_val=1, n_test_good=4, n_test_per_defect=1)
    argv = ["evaluate", "--ckpt", checkpoint, "--root", str(root), "--output", str(tmp_path)]
    assert main([*argv, "--category", "demo_box", "demo_pins"]) == 0
    table = json.loads((tmp_path / "loco_report_per_category.json").read_text())["table"]
    assert list(table) == ["demo_box", "demo_pins", "mean"]
    for category in ("demo_box", "demo_pins"):
        own = json.loads((tmp_path / category / "loco_report.json").read_text())["table"]
        assert own == table[category]
        assert (tmp_path / category / "grids" / "good.png").is_file()
    values = [table[c][k]["AU-sPRO"] for c in ("demo_box", "demo_pins") for k in ("logical", "structural")]
    assert len(set(values)) > 1  # cells differ, so the mean below is a real check
    for kind in ("logical", "structural", "mean"):
        for column in ("image_AUROC", "AU-sPRO"):
            expected = (table["demo_box"][kind][column] + table["demo_pins"][kind][column]) / 2
            assert table["mean"][kind][column] == pytest.approx(expected)
    out = capsys.readouterr().out
    assert "Per category, and the mean over categories:" in out
    assert "| demo_pins |" in out
