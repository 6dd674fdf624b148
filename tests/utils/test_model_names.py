"""The "did you mean" hint for a misspelt ``--model`` on anomalib's CLI."""

import pytest

import anomalib_npgmf.models  # noqa: F401  (registers our models as AnomalibModule subclasses)
from anomalib_npgmf.utils.model_names import hint_misspelt_cli_model, model_classes, nearest_model_name


def test_known_classes_include_anomalib_models_and_ours():
    classes = model_classes()
    assert {"Npgmf", "InpFormerPlusPlus", "Padim", "InpFormer"} <= set(classes)


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [
        (["fit", "--model", "Npgmff"], "Npgmf"),
        (["fit", "--model=npgmf"], "Npgmf"),
        (["train", "--model", "InpFormerPlusPLus", "--data", "x"], "InpFormerPlusPlus"),
        (["fit", "--model", "Patchcor"], "Patchcore"),
    ],
)
def test_a_misspelt_model_gets_the_nearest_name(argv, suggestion, capsys):
    hint = hint_misspelt_cli_model(argv)
    assert hint is not None and hint.endswith(f"did you mean '{suggestion}'?")
    assert hint in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["fit", "--model", "Npgmf"],
        ["fit", "--model", "anomalib_npgmf.Npgmf"],
        ["fit", "--config", "configs/npgmf/demo_cpu.yaml"],
        ["fit", "--model", "configs/model.yaml"],
        ["fit", "--model", "zzzzzzzzzzzz"],
        [],
    ],
)
def test_valid_or_unguessable_names_get_no_hint(argv, capsys):
    assert hint_misspelt_cli_model(argv) is None
    assert capsys.readouterr().err == ""


def test_nearest_name_ignores_case_and_underscores():
    classes = model_classes()
    assert nearest_model_name("inp_former_plus_plus", classes) == "InpFormerPlusPlus"
    assert nearest_model_name("qwertyuiop", classes) is None
