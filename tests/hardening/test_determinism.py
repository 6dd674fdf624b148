"""Same seed, same data -> bit-identical weights and scores (torch eager, CPU, same thread count).

Measured: at a fixed thread count two runs are bit-identical for both models, in one process and across processes.
Changing ``torch.get_num_threads()`` changes float reduction order (InpFormerPlusPlus scores moved by ~6e-8 between 1
and 2 threads), so the comparison keeps the thread count fixed. anomalib 2.7's CLI ignored ``--seed_everything``
(initial weights and data order differed between two identical ``anomalib fit`` runs); ``honour_cli_seed`` fixes it.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import seed_everything

from anomalib_npgmf.utils import compat

from .conftest import CATEGORY, TINY_NPGMF, subprocess_environment, tiny_datamodule, tiny_engine, tiny_model


def _run(name: str, root: Path, output: Path) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[float]]:
    """Seed, train 1 epoch, return (state dict, raw model scores of the test images, post-processed scores)."""
    seed_everything(0, workers=True)
    model = tiny_model(name)  # Npgmf without the CLIP text prior: a random-init CLIP costs ~30 s per run here
    engine = tiny_engine(output, deterministic=True)
    datamodule = tiny_datamodule(root)
    engine.fit(model, datamodule=datamodule)
    datamodule.setup("test")
    model.eval()
    raw = []
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            raw.append(model.model(model.pre_processor.transform(batch.image)).pred_score)
    batches = engine.predict(model, dataloaders=datamodule.test_dataloader())
    processed = [score for batch in batches for score in batch.pred_score.reshape(-1).tolist()]
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    return state, torch.cat(raw), processed


@pytest.mark.parametrize("name", ["Npgmf", "InpFormerPlusPlus"])
def test_same_seed_same_data_gives_bit_identical_weights_and_scores(pristine_dataset, tmp_path, name):
    threads = torch.get_num_threads()
    first = _run(name, pristine_dataset, tmp_path / "first")
    second = _run(name, pristine_dataset, tmp_path / "second")
    assert torch.get_num_threads() == threads
    different = [key for key in first[0] if not torch.equal(first[0][key], second[0][key])]
    assert not different, f"tensors differ between two seeded runs: {different[:10]}"
    assert torch.equal(first[1], second[1])  # raw scores, bit for bit
    assert first[2] == second[2]  # post-processed scores
    assert torch.isfinite(first[1]).all() and len(set(first[1].tolist())) > 1  # real, varying scores


def test_a_different_seed_gives_different_weights(pristine_dataset, tmp_path):
    # The comparison above can fail: seeds do reach the model.
    seed_everything(0)
    first = tiny_model("InpFormerPlusPlus").state_dict()
    seed_everything(1)
    second = tiny_model("InpFormerPlusPlus").state_dict()
    assert any(not torch.equal(first[key], second[key]) for key in first)


def _cli_fit(root: Path, output: Path) -> dict[str, torch.Tensor]:
    anomalib = str(Path(sys.executable).parent / "anomalib")
    command = [anomalib, "fit", "--model", "Npgmf", "--seed_everything", "0"]
    command += [
        f"--model.{key}={list(value) if isinstance(value, tuple) else value}" for key, value in TINY_NPGMF.items()
    ]
    command += ["--data", "anomalib_npgmf.data.MVTecLOCORegions", "--data.root", str(root), "--data.category", CATEGORY]
    command += ["--data.num_workers", "0", "--data.train_batch_size", "4", "--trainer.max_epochs", "1"]
    command += [
        "--trainer.logger",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        "--default_root_dir",
        str(output),
    ]
    environment = subprocess_environment()
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = [p for p in output.rglob("model.ckpt") if "latest" not in p.parts]
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_two_anomalib_cli_runs_with_the_same_seed_are_bit_identical(pristine_dataset, tmp_path):
    first = _cli_fit(pristine_dataset, tmp_path / "first")
    second = _cli_fit(pristine_dataset, tmp_path / "second")
    different = [key for key in first if not torch.equal(first[key], second[key])]
    assert not different, f"two `anomalib fit --seed_everything 0` runs differ in {different[:10]}"


def test_cli_seed_wrapper_seeds_only_integer_seeds(monkeypatch):
    import anomalib.utils.config as config_module

    seen: list[object] = []
    monkeypatch.setattr(config_module, "update_config", lambda config: seen.append(config) or config)
    assert compat.honour_cli_seed(force=True)
    wrapped = config_module.update_config
    assert compat.honour_cli_seed(force=True) and config_module.update_config is wrapped  # idempotent
    wrapped({"seed_everything": 7})
    first = torch.rand(3)
    wrapped({"seed_everything": 7})
    assert torch.equal(first, torch.rand(3))
    state = torch.random.get_rng_state()
    wrapped({"seed_everything": True})  # anomalib's default: a random seed, left alone
    assert torch.equal(state, torch.random.get_rng_state())
    assert len(seen) == 3
