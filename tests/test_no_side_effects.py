"""Installing the plugin changes nothing in anomalib: stock CLI commands behave the same with the hook on and off.

The start-up hook imports our models (and with them our datamodule, metrics and callbacks) into every ``anomalib``
process. jsonargparse resolves short names (``--data MVTecLOCO``) over every imported subclass, so one class of ours
named like one of anomalib's breaks that name for every user (issue 14: our old ``MVTecLOCO`` did, with
"Multiple subclasses with name MVTecLOCO"). This runs a matrix of anomalib's own commands, models and datamodules,
short names and full class paths, once with the hook and once with ``ANOMALIB_NPGMF_NO_HOOK=1``, and requires the
same exit code, the same stdout and the same error message. The only allowed difference is our names added to the
"known subclasses" lists of ``--help``.
"""

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

RUNNER = Path(__file__).with_name("hook_matrix_runner.py")


def _commands(data: Path, config: Path) -> dict[str, list[str]]:
    """The matrix: subcommand x anomalib model x anomalib datamodule, short names and full paths."""
    loco = ["--data.root", str(data), "--data.category", "breakfast_box"]
    folder = ["--data.name", "parts", "--data.root", str(data), "--data.normal_dir", "good"]
    return {
        "fit Padim MVTecLOCO (issue 14)": ["fit", "--model", "Padim", "--data", "MVTecLOCO", *loco],
        "fit full paths": ["fit", "--model", "anomalib.models.Padim", "--data", "anomalib.data.MVTecLOCO", *loco],
        "fit module paths": [
            "fit",
            "--model",
            "anomalib.models.image.reverse_distillation.ReverseDistillation",
            "--data",
            "anomalib.data.datamodules.image.mvtec_loco.MVTecLOCO",
            *loco,
        ],
        "train ReverseDistillation MVTecLOCO": [
            "train",
            "--model",
            "ReverseDistillation",
            "--data",
            "MVTecLOCO",
            *loco,
        ],
        "train InpFormer Visa": ["train", "--model", "InpFormer", "--data", "Visa"],
        "test Patchcore MVTecAD": ["test", "--model", "Patchcore", "--data", "MVTecAD"],
        "test EfficientAd MVTecLOCO": ["test", "--model", "EfficientAd", "--data", "MVTecLOCO", *loco],
        "predict Padim Folder": ["predict", "--model", "Padim", "--data", "Folder", *folder],
        "predict Patchcore image path": ["predict", "--model", "Patchcore", "--data", str(data)],
        "export EfficientAd openvino": ["export", "--model", "EfficientAd", "--export_type", "openvino"],
        "export Padim onnx full path": ["export", "--model", "anomalib.models.Padim", "--export_type", "onnx"],
        "fit Fastflow BTech, callbacks": [  # short ModelCheckpoint is ambiguous in anomalib itself: full path
            "fit",
            "--model",
            "Fastflow",
            "--data",
            "BTech",
            "--trainer.callbacks+=EarlyStopping",
            "--trainer.callbacks.monitor",
            "image_AUROC",
            "--trainer.callbacks+=anomalib.callbacks.ModelCheckpoint",
        ],
        "train config file MVTecLOCO": ["train", "--config", str(config)],
        "fit misspelt model": ["fit", "--model", "Padimm", "--data", "MVTecAD"],
        "fit misspelt data": ["fit", "--model", "Padim", "--data", "MVTecLOCOO"],
        "fit help": ["fit", "--help"],
    }


def _run_matrix(commands: list[list[str]], output: Path, hook: bool) -> list[tuple[int, str, str]]:
    environment = {**os.environ, "COLUMNS": "2000", "OMP_NUM_THREADS": "1"}  # no wrapping of --help's lists
    environment.pop("ANOMALIB_NPGMF_NO_HOOK", None)
    if not hook:
        environment["ANOMALIB_NPGMF_NO_HOOK"] = "1"
    commands_file = output / "commands.json"
    output.mkdir(parents=True)
    commands_file.write_text(json.dumps(commands))
    work = output / "cwd"  # each run in its own working directory, in case a command writes anything
    work.mkdir()
    result = subprocess.run(
        [sys.executable, str(RUNNER), str(commands_file), str(output)],
        capture_output=True,
        text=True,
        timeout=600,
        env=environment,
        cwd=work,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [
        (int((output / f"{i}.rc").read_text()), (output / f"{i}.out").read_text(), (output / f"{i}.err").read_text())
        for i in range(len(commands))
    ]


_OUR_NAME = re.compile(r",?\s*anomalib_npgmf(\.\w+)+")


_LAYOUT = re.compile(r"[\s│─╭╮╰╯]+")


def _help_without_our_names(text: str) -> str:
    """``--help`` lists every known subclass of a parameter's type, ours included when the hook is on.

    The lists are drawn in a rich panel whose width follows its longest line, so the padding is dropped too.
    """
    return _LAYOUT.sub(" ", _OUR_NAME.sub("", text))


def _error_message(stderr: str) -> list[str]:
    """jsonargparse's error (the lines after ``error:``); warnings and our "did you mean" hint left out."""
    lines = stderr.splitlines()
    start = next((i for i, line in enumerate(lines) if "error:" in line), len(lines))
    return [line for line in lines[start:] if "anomalib-npgmf" not in line]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> dict[str, dict[bool, tuple[int, str, str]]]:
    """Run every command with the hook on and off (two processes in parallel), keyed by command name."""
    root = tmp_path_factory.mktemp("matrix")
    data = root / "data"
    (data / "good").mkdir(parents=True)
    config = root / "loco.yaml"
    config.write_text(
        "model:\n  class_path: Patchcore\n"
        f"data:\n  class_path: MVTecLOCO\n  init_args:\n    root: {data}\n    category: breakfast_box\n"
    )
    commands = _commands(data, config)
    arguments = [[*command, "--print_config"] if "--help" not in command else command for command in commands.values()]
    with ThreadPoolExecutor(2) as pool:
        on, off = pool.map(lambda hook: _run_matrix(arguments, root / f"hook_{hook}", hook), (True, False))
    return {name: {True: on[i], False: off[i]} for i, name in enumerate(commands)}


def test_the_matrix_exercises_the_hook():
    """Without our classes in the hook-on process the comparison would prove nothing."""
    code = (
        "import sys, anomalib.cli.cli; print('anomalib_npgmf.models' in sys.modules, "
        "'anomalib_npgmf.data.mvtec_loco' in sys.modules)"
    )
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert on.stdout.split() == ["True", "True"]


NAME_CLASHES = """
import anomalib.cli.cli  # as the console script: the hook imports our modules in here
seen, found = set(), {}
def subclasses(cls):
    try:
        return type.__subclasses__(cls) if cls is type else cls.__subclasses__()
    except TypeError:
        return []
stack = [object]
while stack:
    for cls in subclasses(stack.pop()):
        if cls not in seen:
            seen.add(cls)
            stack.append(cls)
            found.setdefault(cls.__name__, set()).add(str(vars(cls).get("__module__", "")).split(".")[0])
clashes = sorted(
    name for name, roots in found.items()
    if not name.startswith("_") and "anomalib_npgmf" in roots and roots & {"anomalib", "lightning", "torch",
    "torchmetrics", "torchvision", "jsonargparse", "timm", "open_clip"}
)
ours = sum("anomalib_npgmf" in roots for roots in found.values())
print(ours, clashes)
"""


def test_no_class_of_ours_shares_a_name_with_one_jsonargparse_may_resolve():
    """Every class the hook brings into an anomalib process is named apart from anomalib's, Lightning's and torch's.

    Stricter than the command matrix, which only exercises some types: jsonargparse resolves a short name over all
    imported subclasses of whatever type a parameter has (model, data, callbacks, optimisers, modules, metrics).
    """
    environment = {key: value for key, value in os.environ.items() if key != "ANOMALIB_NPGMF_NO_HOOK"}
    result = subprocess.run(
        [sys.executable, "-c", NAME_CLASHES], capture_output=True, text=True, timeout=300, env=environment
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ours, clashes = result.stdout.strip().split(maxsplit=1)
    assert int(ours) > 20  # the hook was on: our models, datamodule, metrics and their parts are there
    assert clashes == "[]"  # before issue 14: ['MVTecLOCO', 'MVTecLOCODataset', 'ReverseDistillationLoss']


@pytest.mark.parametrize("name", list(_commands(Path("/data"), Path("/config.yaml"))))
def test_stock_command_behaves_the_same_with_and_without_the_hook(matrix, name: str):
    (code_on, out_on, err_on), (code_off, out_off, err_off) = matrix[name][True], matrix[name][False]
    assert code_on == code_off, f"exit {code_on} with the hook, {code_off} without:\n{err_on[-3000:]}"
    if name == "fit help":
        assert _help_without_our_names(out_on) == _help_without_our_names(out_off)
    else:
        assert out_on == out_off
    if code_off != 0:
        assert _error_message(err_on) == _error_message(err_off)


def test_the_matrix_runs_what_it_means_to(matrix):
    """Expected outcomes, so that a matrix of commands that all fail the same way cannot pass."""
    failing = {name for name, runs in matrix.items() if runs[False][0] != 0}
    assert failing == {"fit misspelt model", "fit misspelt data"}
    for name, runs in matrix.items():
        if name not in failing and name != "fit help":
            assert "class_path: anomalib.models." in runs[False][1], name
    assert "class_path: anomalib.data.MVTecLOCO" in matrix["fit Padim MVTecLOCO (issue 14)"][True][1]
    assert "anomalib_npgmf.Npgmf" in matrix["fit help"][True][1]  # the hook was on: our names are listed
