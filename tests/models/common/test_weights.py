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
    """``pre_trained=True`` with no path loads ``$ANOMALIB_NPGMF_WEIGHTS_DIR/<backbone>.safetensors``."""
    from safetensors.torch import save_file

    source = timm.create_model("resnet18", pretrained=False).state_dict()
    save_file({key: value.contiguous() for key, value in source.items()}, tmp_path / "resnet18.safetensors")
    monkeypatch.setenv("ANOMALIB_NPGMF_WEIGHTS_DIR", str(tmp_path))
    model = create_timm_encoder("resnet18", pre_trained=True, weights_path=None, features_only=True)
    assert torch.equal(model.state_dict()["conv1.weight"], source["conv1.weight"])
    assert torch.equal(model.state_dict()["layer4.1.bn2.running_var"], source["layer4.1.bn2.running_var"])


def test_weights_dir_without_the_expected_file_names_folder_and_file(tmp_path, monkeypatch):
    """A file of another name in the folder is not picked up; the error says which name it looked for, and where."""
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), tmp_path / "resnet18.safetensors.pt")
    monkeypatch.setenv("ANOMALIB_NPGMF_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(MissingWeightsError, match=str(tmp_path)) as error:
        create_timm_encoder("resnet18", pre_trained=True, weights_path=None)
    assert "resnet18.safetensors" in str(error.value)


def test_weights_of_another_architecture_fail_clearly(tmp_path):
    path = tmp_path / "resnet34.pth"
    torch.save(timm.create_model("resnet34", pretrained=False).state_dict(), path)
    with pytest.raises(ValueError, match="does not fit backbone 'resnet18'"):
        create_timm_encoder("resnet18", pre_trained=True, weights_path=path, features_only=True)


def test_unknown_backbone_is_named():
    with pytest.raises(ValueError, match="unknown backbone 'resnet_nope'"):
        create_timm_encoder("resnet_nope", pre_trained=False, weights_path=None)
