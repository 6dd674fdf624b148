"""anomalib's model contract for our two models: the flow anomalib's integration tests run for every built-in model.

anomalib (tests/integration/model/test_models.py) builds each model by its registry name with ``get_model``, fits it
with ``Engine(max_epochs=1)``, then tests, trains, validates, predicts and exports (every ``ExportType``) from the
checkpoint the fit wrote under ``<root>/<model.name>/<datamodule.name>/<category>/v0/weights/lightning/model.ckpt``.
We run the same steps on the generated LOCO data (64 px, 1 epoch) and also predict with each export through anomalib's
own inferencers.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.deploy import ExportType, OpenVINOInferencer, TorchInferencer
from anomalib.models import get_model, list_models

from .conftest import CATEGORY, TINY_INP, TINY_NPGMF, single_thread, tiny_datamodule, tiny_engine

REGISTRY_NAMES = {"Npgmf": "npgmf", "InpFormerPlusPlus": "inp_former_plus_plus"}
KWARGS = {"Npgmf": TINY_NPGMF, "InpFormerPlusPlus": TINY_INP}


@dataclass
class Project:
    """A fitted model's project folder and how to rebuild the objects anomalib's tests rebuild for every step."""

    name: str
    dataset: Path
    root: Path
    checkpoint: Path

    def objects(self) -> tuple[object, object, object]:
        model = get_model(REGISTRY_NAMES[self.name], **_fresh(KWARGS[self.name]))
        return model, tiny_datamodule(self.dataset), tiny_engine(self.root)


def _fresh(kwargs: dict) -> dict:
    return {key: dict(value) if isinstance(value, dict) else value for key, value in kwargs.items()}


@pytest.fixture(scope="module", params=list(REGISTRY_NAMES))
def project(request, pristine_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """``fit`` (anomalib's first step): the checkpoint every later step starts from."""
    root = tmp_path_factory.mktemp(f"contract_{request.param}")
    model = get_model(REGISTRY_NAMES[request.param], **_fresh(KWARGS[request.param]))
    assert type(model).__name__ == request.param
    datamodule = tiny_datamodule(pristine_dataset)
    engine = tiny_engine(root)
    with single_thread():
        engine.fit(model=model, datamodule=datamodule)
    checkpoint = root / model.name / datamodule.name / CATEGORY / "v0" / "weights" / "lightning" / "model.ckpt"
    assert checkpoint.is_file()
    return Project(request.param, pristine_dataset, root, checkpoint)


def test_listed_by_anomalib_under_the_snake_case_name(project):
    assert REGISTRY_NAMES[project.name] in list_models()


def test_test_from_checkpoint(project):
    model, datamodule, engine = project.objects()
    results = engine.test(model=model, datamodule=datamodule, ckpt_path=project.checkpoint)
    assert 0.0 <= results[0]["image_AUROC"] <= 1.0


def test_train_from_checkpoint(project):
    model, datamodule, engine = project.objects()
    results = engine.train(model=model, datamodule=datamodule, ckpt_path=project.checkpoint)
    assert 0.0 <= results[0]["image_AUROC"] <= 1.0


def test_validate_from_checkpoint(project):
    """``validate --ckpt_path`` runs on the checkpoint's weights, not the fresh model's (anomalib logs no validation
    metric by default: the result is one empty dict per dataloader)."""
    model, datamodule, engine = project.objects()
    saved = torch.load(project.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    trained = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    assert any(not torch.equal(model.state_dict()[name], saved[name]) for name in trained)  # fresh != trained
    results = engine.validate(model=model, datamodule=datamodule, ckpt_path=project.checkpoint)
    assert len(results) == 1, results
    state = model.state_dict()  # validation fits statistics (buffers); the trained parameters must be the saved ones
    assert all(torch.equal(state[name], saved[name]) for name in trained)


def test_predict_from_checkpoint(project):
    model, datamodule, engine = project.objects()
    predictions = engine.predict(model=model, datamodule=datamodule, ckpt_path=project.checkpoint)
    scores = np.concatenate([batch.pred_score.reshape(-1).numpy() for batch in predictions])
    assert len(scores) == len(list((project.dataset / CATEGORY / "test").rglob("*.png")))
    assert np.isfinite(scores).all()


@pytest.mark.parametrize("export_type", list(ExportType))
def test_export_from_checkpoint_and_predict_with_anomalib_inferencers(project, export_type, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # OpenVINOInferencer writes openvino_cache/ into the working directory
    monkeypatch.setenv("TRUST_REMOTE_CODE", "1")  # anomalib's TorchInferencer unpickles the exported module
    model, _, engine = project.objects()
    path = engine.export(model=model, export_type=export_type, ckpt_path=project.checkpoint, export_root=tmp_path)
    assert path is not None and Path(path).is_file()
    image = sorted((project.dataset / CATEGORY / "test" / "structural_anomalies").glob("*.png"))[0]
    if export_type == ExportType.TORCH:
        prediction = TorchInferencer(path=path, device="cpu").predict(image)
    else:  # OpenVINO reads both its IR and ONNX
        prediction = OpenVINOInferencer(path, device="CPU", config={"INFERENCE_PRECISION_HINT": "f32"}).predict(image)
    # np.asarray fails on tensors that require grad: our torch export is saved frozen (TorchInferencer has no no_grad).
    assert np.isfinite(np.asarray(prediction.pred_score)).all()
    assert np.asarray(prediction.anomaly_map).shape[-2:] == tuple(model.input_size or (56, 56))
