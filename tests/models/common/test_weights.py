import pytest
import timm
import torch

from anomalib_npgmf.models.common import MissingWeightsError, create_timm_encoder


def test_random_init_needs_no_file():
    model = create_timm_encoder("resnet18", pre_trained=False, weights_path=None, features_only=True)
    assert len(model.feature_info.channels()) == 5


def test_pretrained_without_file_names_the_parameter_and_file(monkeypatch):
    monkeypatch.delenv("ANOMALIB_NPGMF_WEIGHTS_DIR", raising=False)
    with pytest.raises(MissingWeightsError) as error:
        create_timm_encoder("resnet18", pre_trained=True, weights_path=None, parameter="backbone_weights")
    message = str(error.value)
    assert "backbone_weights" in message
    assert "resnet18.safetensors" in message
    assert "pre_trained=False" in message


def test_pretrained_loads_a_local_state_dict(tmp_path):
    source = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    model = create_timm_encoder("resnet18", pre_trained=True, weights_path=path, features_only=True)
    assert torch.equal(model.state_dict()["conv1.weight"], source.state_dict()["conv1.weight"])


def test_weights_dir_environment_variable_is_used(tmp_path, monkeypatch):
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), tmp_path / "resnet18.safetensors.pt")
    monkeypatch.setenv("ANOMALIB_NPGMF_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(MissingWeightsError, match=str(tmp_path)):
        create_timm_encoder("resnet18", pre_trained=True, weights_path=None)


def test_weights_of_another_architecture_fail_clearly(tmp_path):
    path = tmp_path / "resnet34.pth"
    torch.save(timm.create_model("resnet34", pretrained=False).state_dict(), path)
    with pytest.raises(ValueError, match="does not fit backbone 'resnet18'"):
        create_timm_encoder("resnet18", pre_trained=True, weights_path=path, features_only=True)


def test_unknown_backbone_is_named():
    with pytest.raises(ValueError, match="unknown backbone 'resnet_nope'"):
        create_timm_encoder("resnet_nope", pre_trained=False, weights_path=None)
