"""Every shipped config RUNS end to end with anomalib's own CLI, not only parses (issue 17).

Each config in ``configs/`` trains (one batch, one epoch), tests and exports its checkpoint on generated data in its
dataset's real layout and image sizes: MVTec LOCO (1600x1280 ... 800x1600, several masks per structural image),
MVTec AD (1024 / 700 px ...), VisA's ``visa_pytorch`` split (JPEG, ~1500x1000), the demo data. The configs' own
``data.root`` (``./datasets/...``) is kept: each run's working folder links ``datasets`` to the generated data. Only
what a CPU needs is overridden: small backbones with random init, ``max_epochs: 1``, one training / validation batch,
a small input size, ``num_workers: 0``. Everything else comes from the config, including ``check_val_every_n_epoch``:
with one epoch, most configs never validate, so this also checks that the final model is checkpointed regardless.

The configs run two at a time (2 CI cores); each run is one Python process (``anomalib.cli.cli.main``, what the
``anomalib`` script calls) that trains, then exports, so the ~8 s start-up is paid once per config.
"""

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))

# Real image sizes (width, height) of each category; scenes alternate so categories differ.
LOCO_SIZES = {
    "breakfast_box": (1600, 1280),
    "juice_bottle": (800, 1600),
    "pushpins": (1700, 1000),
    "screw_bag": (1600, 1100),
    "splicing_connectors": (1700, 850),
}
MVTEC_AD_SIZES = {
    "bottle": 900, "cable": 1024, "capsule": 1000, "carpet": 1024, "grid": 1024, "hazelnut": 1024, "leather": 1024,
    "metal_nut": 700, "pill": 800, "screw": 1024, "tile": 840, "toothbrush": 1024, "transistor": 1024, "wood": 1024,
    "zipper": 1024,
}  # fmt: skip
VISA_SIZES = {
    "candle": (1284, 1168), "capsules": (1500, 1000), "cashew": (1274, 1000), "chewinggum": (1251, 1000),
    "fryum": (1500, 1000), "macaroni1": (1500, 1000), "macaroni2": (1500, 1000), "pcb1": (1404, 1000),
    "pcb2": (1404, 1000), "pcb3": (1404, 1000), "pcb4": (1404, 1000), "pipe_fryum": (1500, 1000),
}  # fmt: skip
FEW = {"n_val": 1, "n_test_good": 1, "n_test_per_defect": 1}


def _datasets() -> list[dict]:
    """Arguments of every category to generate, under a ``datasets`` folder mirroring the configs' roots."""
    jobs = [
        {"root": "demo", "category": "demo_box", "scene": "box", "image_size": 128, "n_train": 3},
        {"root": "demo", "category": "demo_pins", "scene": "pins", "image_size": 128, "n_train": 3},
    ]
    for index, (name, size) in enumerate(LOCO_SIZES.items()):
        scene = ("box", "pins")[index % 2]
        defects = ["missing_circle", "scratch"] if scene == "box" else ["empty_cell", "contamination"]
        jobs.append(
            {"root": "MVTec_LOCO", "category": name, "scene": scene, "image_size": size, "n_train": 3,
             "defects": defects, "structural_regions": 2}
        )  # fmt: skip
    for name, side in MVTEC_AD_SIZES.items():  # n_shots 4 in the few-shot config
        jobs.append({"root": "MVTecAD", "category": name, "layout": "mvtec_ad", "image_size": side, "n_train": 4,
                     "defects": ["scratch"]})  # fmt: skip
    for name, size in VISA_SIZES.items():
        jobs.append({"root": "visa/visa_pytorch", "category": name, "layout": "visa", "image_size": size,
                     "n_train": 3, "defects": ["contamination"]})  # fmt: skip
    return jobs


GENERATE = """
import json, sys
from pathlib import Path
from anomalib_npgmf.data import generate_demo_dataset
for job in json.loads(sys.argv[2]):
    generate_demo_dataset(Path(sys.argv[1]) / job.pop("root"), job.pop("category"), **json.loads(sys.argv[3]), **job)
"""


def _generate(data: Path) -> None:
    """Two generator processes (numpy/OpenCV only, no torch start-up), each writing every other category."""
    jobs = _datasets()
    commands = [[sys.executable, "-c", GENERATE, str(data), json.dumps(jobs[i::2]), json.dumps(FEW)] for i in (0, 1)]
    processes = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for c in commands]
    errors = [process.communicate(timeout=600)[1] for process in processes]
    assert all(process.returncode == 0 for process in processes), "\n".join(errors)[-4000:]


def _overrides(config: dict) -> tuple[list[str], list[str]]:
    """(model overrides, trainer/data overrides): what a 2-core CPU without weights needs, nothing else."""
    model = config["model"]["class_path"].rsplit(".", 1)[-1]
    if model == "Npgmf":
        model_args = ["--model.backbone", "resnet18", "--model.pre_trained", "false", "--model.image_size", "[128,128]"]
    elif model == "InpFormerPlusPlus":  # the smallest DINOv2-like ViT the model accepts (4 blocks, width 64)
        model_args = ["--model.backbone", "vit_small_patch14_reg4_dinov2", "--model.pre_trained", "false"]
        model_args += ["--model.backbone_kwargs", "{depth: 4, embed_dim: 64, num_heads: 2}"]
        model_args += ["--model.image_size", "64", "--model.crop_size", "56"]
    else:
        pytest.fail(f"no CPU overrides for model {model}: add them here")
    run_args = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1"]
    run_args += ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--data.num_workers", "0"]
    return model_args, run_args


DRIVER = """
import glob, json, sys
from anomalib.cli.cli import main
config, export_type, model_args, run_args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
sys.argv = ["anomalib", "train", "--config", config, *model_args, *run_args]
main()
checkpoints = sorted(glob.glob("results/**/weights/lightning/*.ckpt", recursive=True))
print("CHECKPOINTS", json.dumps(checkpoints), flush=True)
sys.argv = ["anomalib", "export", "--config", config, *model_args, "--trainer.accelerator", "cpu",
            "--data.num_workers", "0", "--ckpt_path", checkpoints[-1], "--export_type", export_type]
main()
"""


def _run(config: Path, workdir: Path) -> dict:
    parsed = yaml.safe_load(config.read_text())
    model_args, run_args = _overrides(parsed)
    # OpenVINO for the config a LOCO user starts with, torch (~15 s quicker) for the rest: both export paths run.
    export_type = "openvino" if _name(config) == "npgmf/mvtec_loco.yaml" else "torch"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "COLUMNS": "200"}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, str(config), export_type, json.dumps(model_args), json.dumps(run_args)],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    return {
        "returncode": result.returncode,
        "output": result.stdout + result.stderr,
        "seconds": time.monotonic() - started,
        "export_type": export_type,
        "data": parsed["data"],
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """Generate the data (2 processes), then run every config (2 at a time); results keyed by config."""
    base = tmp_path_factory.mktemp("configs_run")
    data = base / "datasets"
    _generate(data)
    workdirs = {}
    for config in CONFIGS:
        workdir = base / f"{config.parent.name}-{config.stem}"
        workdir.mkdir()
        (workdir / "datasets").symlink_to(data, target_is_directory=True)
        workdirs[config] = workdir
    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(CONFIGS, pool.map(lambda c: _run(c, workdirs[c]), CONFIGS), strict=True))
    return {_name(config): (workdirs[config], result) for config, result in results.items()}


def _name(config: Path) -> str:
    return f"{config.parent.name}/{config.name}"


@pytest.mark.parametrize("name", [_name(c) for c in CONFIGS])
def test_config_trains_tests_and_exports(runs, name):
    workdir, run = runs[name]
    output = run["output"]
    assert run["returncode"] == 0, f"{name} failed after {run['seconds']:.0f} s:\n{output[-6000:]}"
    checkpoints = sorted(workdir.glob("results/**/weights/lightning/*.ckpt"))
    assert checkpoints, f"{name}: no checkpoint written\n{output[-3000:]}"
    assert "image_AUROC" in output, f"{name}: no test metrics printed"
    exported = {"openvino": "model.xml", "torch": "model.pt"}[run["export_type"]]
    assert list(workdir.glob(f"results/**/weights/{run['export_type']}/{exported}")), f"{name}: nothing exported"
    data = run["data"]
    loco = "MVTec_LOCO" in str(data["init_args"].get("root")) or data["class_path"].endswith("MVTecLOCORegions")
    if data["class_path"].endswith("MVTecLOCORegions"):
        assert "MVTec LOCO results" in output
        reports = list(workdir.glob("results/**/loco_report.json"))
        assert reports, f"{name}: no LOCO table written"
        assert set(json.loads(reports[0].read_text())["table"]) == {"logical", "structural", "mean"}
    if data["class_path"].endswith("MultiCategory"):
        tables = list(workdir.glob("results/**/per_category_image_auroc.csv"))
        assert tables, f"{name}: no per-category table"
        if loco:  # the LOCO table per category, logical / structural, and their mean
            reports = list(workdir.glob("results/**/loco_report_per_category.json"))
            assert reports, f"{name}: no per-category LOCO table"
            rows = json.loads(reports[0].read_text())["table"]
            assert set(rows) == {*LOCO_SIZES, "mean"}
            assert set(rows["mean"]) == {"logical", "structural", "mean"}


def test_generated_data_has_the_real_layouts_and_sizes(runs):
    """The data the configs ran on: real sizes, several masks per LOCO image, VisA's JPEG split."""
    from PIL import Image

    workdir, _ = next(iter(runs.values()))
    data = workdir / "datasets"
    for name, size in LOCO_SIZES.items():
        assert Image.open(data / "MVTec_LOCO" / name / "test/good/000.png").size == size
        assert len(list((data / "MVTec_LOCO" / name / "ground_truth/structural_anomalies/000").glob("*.png"))) == 2
    for name, side in MVTEC_AD_SIZES.items():
        assert Image.open(data / "MVTecAD" / name / "ground_truth/scratch/000_mask.png").size == (side, side)
    for name, size in VISA_SIZES.items():
        assert Image.open(data / "visa/visa_pytorch" / name / "test/bad/000.JPG").size == size


def test_every_config_ran_and_report_timings(runs):
    """One line per config (seconds), visible with ``-s``; all configs in ``configs/`` are covered."""
    assert set(runs) == {_name(c) for c in CONFIGS}
    for name, (_, run) in sorted(runs.items()):
        print(f"{name:<45} {run['seconds']:6.1f} s  rc={run['returncode']}")
