"""Train one of our tiny models for one epoch on 1 process or on 2 CPU processes (DDP, gloo); save the final state.

Run by the models' ``test_ddp.py`` as a script, because Lightning's DDP launcher starts the other rank by re-running it.
Single process: batches of 8 in dataset order. DDP: 2 ranks x 4, rank r taking images r, r+2, ... (Lightning's own
DistributedSampler would shuffle), so every optimisation step sees the same 8 images in both set-ups.
``--precision 64-true`` trains in float64 (what the tests compare, see ``tests/models/conftest.py``);
``--local-reduction MODULE`` plants a DDP bug (that module's ``all_reduce_sum`` does nothing) to show the check sees it.
"""

import argparse
import importlib
import os
from pathlib import Path

import torch
from lightning.pytorch import Trainer, seed_everything
from torch.utils.data import DataLoader, Subset

from anomalib_npgmf import InpFormerPlusPlus, Npgmf
from anomalib_npgmf.data import MVTecLOCORegions


def _load_conftest(relative: str) -> object:
    """A conftest of the models' tests (this script runs outside pytest, so it is loaded by path)."""
    import importlib.util

    path = Path(__file__).parent / relative
    spec = importlib.util.spec_from_file_location(f"conftest_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_INP = _load_conftest("inp_former_pp/conftest.py")
TINY_NPGMF = {**_load_conftest("conftest.py").FIT_NPGMF, "category": "demo_box"}
TINY_INP_FORMER_PP = {
    **_INP.TINY_MODEL,
    "backbone_kwargs": dict(_INP.TINY_BACKBONE),
    "warmup_steps": 1,
    "visualizer": False,
}
MODELS = {"npgmf": (Npgmf, TINY_NPGMF), "inp_former_pp": (InpFormerPlusPlus, TINY_INP_FORMER_PP)}


def _cast_inputs(module: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast floating-point inputs of every submodule to ``dtype``.

    anomalib's batch validators keep ``batch.image`` float32 whatever Lightning's precision, and the models feed
    images to several submodules (the encoder directly when fitting the priors), so the cast sits on each of them.
    """

    def cast(_: torch.nn.Module, inputs: tuple) -> tuple:
        return tuple(x.to(dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() else x for x in inputs)

    for submodule in module.modules():
        submodule.register_forward_pre_hook(cast)


def _break_all_reduce(module_name: str) -> None:
    """Replace ``module_name.all_reduce_sum`` by the identity, in this rank (Lightning re-runs the script per rank)."""
    module = importlib.import_module(module_name)
    assert hasattr(module, "all_reduce_sum"), f"{module_name} has no all_reduce_sum to break"
    module.all_reduce_sum = lambda tensor: tensor


def _loader(dataset, batch_size: int, devices: int) -> DataLoader:
    """Rank r of w reads images r, r+w, r+2w, ... in order.

    Lightning's own DistributedSampler would shuffle, and it replaces custom samplers; a per-rank subset does neither.
    Lightning's DDP launcher sets LOCAL_RANK in the processes it starts; the launching process is rank 0.
    """
    rank = int(os.environ.get("LOCAL_RANK", "0")) if devices > 1 else 0
    return DataLoader(
        Subset(dataset, range(rank, len(dataset), devices)),
        batch_size=batch_size,
        shuffle=False,
        collate_fn=dataset.collate_fn,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", choices=sorted(MODELS), default="npgmf")
    parser.add_argument("--category", default="demo_box")
    parser.add_argument("--precision", choices=["32-true", "64-true"], default="32-true")
    parser.add_argument(
        "--local-reduction",
        metavar="MODULE",
        help="deliberate DDP bug for the tests: MODULE's all_reduce_sum becomes a no-op (each rank keeps its own sum)",
    )
    arguments = parser.parse_args()
    if arguments.local_reduction:
        _break_all_reduce(arguments.local_reduction)
    seed_everything(0, workers=True)
    torch.set_num_threads(1)
    datamodule = MVTecLOCORegions(root=arguments.root, category=arguments.category, num_workers=0)
    datamodule.setup()
    per_rank = 8 // arguments.devices
    train = _loader(datamodule.train_data, per_rank, arguments.devices)
    val = _loader(datamodule.val_data, per_rank, arguments.devices)
    model_class, kwargs = MODELS[arguments.model]
    model = model_class(**kwargs)
    if arguments.precision == "64-true":
        _cast_inputs(model.model, torch.float64)
    trainer = Trainer(
        accelerator="cpu",
        devices=arguments.devices,
        strategy="ddp" if arguments.devices > 1 else "auto",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        deterministic=True,
        precision=arguments.precision,
        use_distributed_sampler=False,
        callbacks=model.configure_callbacks(),
    )
    trainer.fit(model, train_dataloaders=train, val_dataloaders=val)
    if trainer.global_rank == 0:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, arguments.out)


if __name__ == "__main__":
    main()
