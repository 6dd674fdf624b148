"""The speed benchmark runs end to end on a tiny budget, writes sane tables, and reports failures as rows."""

import csv
import math

import numpy as np
import pytest

from anomalib_npgmf.benchmarking import measure, speed
from anomalib_npgmf.benchmarking.report import cpu_model

RUNTIMES = ["torch", "openvino-fp32", "openvino-bf16", "openvino-int8"]
TIMED = ["images_per_s_b1", "images_per_s_b2", "p50_ms_b1", "p95_ms_b1", "peak_rss_mb", "size_mb"]
TIMED += ["gflop_per_image", "gflops_achieved", "percent_of_torch_peak", "percent_of_onednn_peak"]


def _positive(value: str) -> bool:
    return value != "" and math.isfinite(float(value)) and float(value) > 0


def test_tiny_run_measures_every_runtime_and_a_failing_model_gets_rows(tmp_path, monkeypatch):
    build = speed.build_model

    def patchcore_breaks(name, size):
        if name == "Patchcore":
            raise RuntimeError("memory bank exploded")
        return build(name, size)

    monkeypatch.setattr(speed, "build_model", patchcore_breaks)
    budget = ["--warmup", "1", "--iterations", "3", "--batch-size", "2", "--batch-warmup", "0"]
    budget += ["--batch-iterations", "1", "--matmul-size", "256", "--epochs", "1", "--image-size", "64", "--small"]
    budget += ["--threads", "1"]  # one thread: immune to the OpenMP stalls a busy shared CI machine causes
    argv = ["--output", str(tmp_path), "--models", "npgmf", "Patchcore", "--runtimes", *RUNTIMES, *budget]
    assert speed.main(argv) == 0

    rows = list(csv.DictReader((tmp_path / "speed.csv").open()))
    assert [(r["model"], r["runtime"]) for r in rows] == [(m, r) for m in ("Npgmf", "Patchcore") for r in RUNTIMES]
    npgmf = {r["runtime"]: r for r in rows if r["model"] == "Npgmf"}
    import openvino as ov

    bf16_supported = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    measured = [r for r in RUNTIMES if r != "openvino-bf16" or bf16_supported]
    for runtime in measured:
        row = npgmf[runtime]
        assert row["note"] == "", (runtime, row["note"])
        assert all(_positive(row[column]) for column in TIMED), (runtime, row)
        assert float(row["p95_ms_b1"]) >= float(row["p50_ms_b1"])
        assert row["timed_calls"] == "3/1"
        assert 10 < float(row["peak_rss_mb"]) < 8000
        assert 0.0 <= float(row["image_auroc"]) <= 1.0
        assert math.isfinite(float(row["auroc_change"])) and _positive(row["speedup_b1"])
        assert row["threads"] == ("torch" if runtime == "torch" else "OV") + " 1"
    # a runtime divided by itself: 1 up to one float64 rounding
    assert float(npgmf["torch"]["speedup_b1"]) == pytest.approx(1.0)
    assert float(npgmf["torch"]["auroc_change"]) == 0.0
    # INT8 really is quantised: Npgmf quantises its frozen resnet18 encoder (about 60 % of the FP32 file; the
    # decoders stay FP32), so the file shrinks by over a quarter.
    assert float(npgmf["openvino-int8"]["size_mb"]) < 0.75 * float(npgmf["openvino-fp32"]["size_mb"])
    if not bf16_supported:
        assert "not supported by this CPU" in npgmf["openvino-bf16"]["note"]
    for row in (r for r in rows if r["model"] == "Patchcore"):
        assert row["note"] == "model failed: RuntimeError: memory bank exploded"
        assert row["images_per_s_b1"] == ""

    (training,) = list(csv.DictReader((tmp_path / "training.csv").open()))
    assert training["model"] == "Npgmf" and _positive(training["s_per_epoch"]) and training["images_per_epoch"] == "12"
    options = list(csv.DictReader((tmp_path / "npgmf_cpu_options.csv").open()))
    assert len(options) == 4 and options[0]["variant"] == "fp32 (baseline)"
    assert all(_positive(o["inference_ms_b1"]) and _positive(o["train_step_ms"]) for o in options if not o["note"])

    report = (tmp_path / "speed.md").read_text()
    assert "Command: `anomalib-npgmf benchmark speed --output" in report
    assert "torch.get_num_threads() = 1; OpenVINO INFERENCE_NUM_THREADS = 1" in report
    assert cpu_model() in report
    for section in ("## Inference", "## Targets", "## Training throughput", "## Npgmf, torch eager"):
        assert section in report
    assert "| Patchcore | torch |" in report and "model failed: RuntimeError: memory bank exploded" in report


def test_unknown_model_stops_with_the_valid_names(capsys):
    with pytest.raises(SystemExit) as stopped:
        speed.main(["--models", "Npgmf", "PatchCoreX"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "unknown model 'PatchCoreX'" in error
    for name in ("Npgmf", "InpFormerPlusPlus", "ReverseDistillation", "Patchcore", "InpFormer"):
        assert name in error


def test_old_model_spellings_still_name_the_registry_models():
    from anomalib_npgmf.benchmarking import registry

    assert [registry.resolve(n) for n in ("rd", "npgmf", "Patchcore", "inp_former_pp", "efficient_ad")] == [
        "ReverseDistillation",
        "Npgmf",
        "Patchcore",
        "InpFormerPlusPlus",
        "EfficientAd",
    ]


def test_percentile_matches_numpy_and_peak_rss_is_this_process():
    values = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0]
    # numpy's linear interpolation, re-implemented in float64: a few roundings apart at most
    assert measure.percentile(values, 95) == pytest.approx(np.percentile(values, 95))
    assert measure.percentile(values, 50) == pytest.approx(np.median(values))
    before = measure.peak_rss_of_this_process_mb()
    block = np.ones(64 * 2**20 // 8)  # 64 MB touched
    assert measure.peak_rss_of_this_process_mb() >= before
    assert measure.peak_rss_of_this_process_mb() > 60 and block.sum() > 0
