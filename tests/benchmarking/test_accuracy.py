"""The accuracy harness runs end to end on a tiny budget and writes its tables."""

import csv

from anomalib_npgmf.benchmarking import accuracy, registry


def test_tiny_run_writes_mean_and_spread(tmp_path):
    assert (
        accuracy.main(
            [
                "--output",
                str(tmp_path),
                "--small",
                "--seeds",
                "0",
                "1",
                "--epochs",
                "1",
                "--image-size",
                "64",
                "--models",
                "npgmf",
                "padim",
            ]
        )
        == 0
    )
    rows = list(csv.DictReader((tmp_path / "runs.csv").open()))
    assert [(r["model"], r["seed"]) for r in rows] == [("Npgmf", "0"), ("Npgmf", "1"), ("Padim", "0"), ("Padim", "1")]
    assert {r["scene"] for r in rows} == {"demo_box"}
    for row in rows:
        for metric in ("logical_AUROC", "structural_AUROC", "logical_AU-sPRO", "structural_AU-sPRO"):
            assert 0.0 <= float(row[metric]) <= 1.0
    summary = (tmp_path / "accuracy.md").read_text()
    assert "| Npgmf | demo_box | 2 |" in summary
    assert "±" in summary


def test_unified_model_is_scored_per_scene_and_a_model_that_cannot_run_says_why(tmp_path, monkeypatch):

    def no_download(size, pretrained):
        raise OSError("cannot download the teacher weights (offline)")

    monkeypatch.setitem(registry.MODELS, "EfficientAd", registry.ModelSpec("EfficientAd", no_download))
    argv = ["--output", str(tmp_path), "--small", "--seeds", "0", "--epochs", "1", "--image-size", "64"]
    assert accuracy.main([*argv, "--scenes", "box", "pins", "--models", "npgmf_unified", "efficient_ad"]) == 0
    rows = list(csv.DictReader((tmp_path / "runs.csv").open()))
    unified = [r for r in rows if r["model"] == "Npgmf_unified"]
    assert sorted(r["scene"] for r in unified) == ["demo_box", "demo_pins"]
    assert all(0.0 <= float(r["logical_AUROC"]) <= 1.0 and not r["note"] for r in unified)
    assert unified[0]["train_s"] == unified[1]["train_s"]  # one training run for both scenes
    failed = [r for r in rows if r["model"] == "EfficientAd"]
    assert len(failed) == 2 and all("offline" in r["note"] for r in failed)
    summary = (tmp_path / "accuracy.md").read_text()
    assert "| EfficientAd | demo_box | 0 | n/a" in summary
    assert "EfficientAd (demo_box) could not run here: OSError: cannot download" in summary


def test_an_mvtec_ad_folder_gives_auroc_and_au_pro_without_the_logical_split(tmp_path):
    from anomalib_npgmf.data import generate_demo_dataset

    small = {"n_train": 12, "n_val": 2, "n_test_good": 4, "n_test_per_defect": 1}
    generate_demo_dataset(tmp_path / "ad", "ad_box", image_size=64, layout="mvtec_ad", **small)
    argv = ["--output", str(tmp_path / "out"), "--root", str(tmp_path / "ad"), "--category", "ad_box"]
    assert accuracy.main([*argv, "--seeds", "0", "--epochs", "1", "--image-size", "64", "--models", "padim"]) == 0
    (row,) = list(csv.DictReader((tmp_path / "out" / "runs.csv").open()))
    assert row["scene"] == "ad_box" and not row["note"]
    assert row["logical_AUROC"] == "nan"
    assert 0.0 <= float(row["structural_AUROC"]) <= 1.0 and 0.0 <= float(row["structural_AU-sPRO"]) <= 1.0
    assert row["mean_AUROC"] == row["structural_AUROC"]
