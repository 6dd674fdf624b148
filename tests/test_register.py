"""The start-up hook: short names resolve in fresh interpreters, cheaply, and never break Python."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest


def _run(code: str, env: dict[str, str] | None = None, python: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python, "-c", code], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )


def test_hook_is_installed_and_imports_nothing_heavy_at_start_up():
    result = _run(
        "import sys; heavy = [m for m in ('torch', 'anomalib', 'typing', 'numpy') if m in sys.modules];"
        "print('hook' if 'anomalib_npgmf._register' in sys.modules else 'no-hook', heavy)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(maxsplit=1) == ["hook", "[]\n"] or result.stdout.strip() == "hook []"


def test_get_model_resolves_the_short_name_in_a_fresh_interpreter():
    result = _run(
        "from anomalib.models import get_model, list_models\n"
        "m = get_model('Npgmf', backbone='resnet18', pre_trained=False, image_size=64, prior_channels=0)\n"
        "print(type(m).__module__, type(m).__name__, 'npgmf' in list_models())"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["anomalib_npgmf.models.npgmf.lightning_model", "Npgmf", "True"]


def test_hook_can_be_switched_off():
    result = _run(
        "import sys, anomalib.models; print('anomalib_npgmf.models' in sys.modules)",
        env={"ANOMALIB_NPGMF_NO_HOOK": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"


def test_python_starts_cleanly_without_anomalib(tmp_path: Path):
    """A venv holding only our start-up files (no anomalib, no torch): Python must start without a word."""
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site_packages = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    ours = Path(sysconfig.get_paths()["purelib"])
    for name in ("anomalib_npgmf_startup.pth", "anomalib_npgmf_startup.start"):
        (site_packages / name).write_text((ours / name).read_text())
    package_root = Path(__import__("anomalib_npgmf").__file__).parent.parent
    (site_packages / "_a_anomalib_npgmf_src.pth").write_text(str(package_root) + "\n")
    result = _run(
        "import sys; import importlib.util as u; print(u.find_spec('anomalib') is None,"
        " 'anomalib_npgmf._register' in sys.modules)",
        python=str(venv / "bin" / "python"),
    )
    assert result.returncode == 0
    assert result.stderr == ""
    assert result.stdout.strip() == "True True"


ANOMALIB = str(Path(sys.executable).parent / "anomalib")


@pytest.mark.parametrize(
    "arguments",
    [["fit"], ["train"], ["test"], ["predict"], ["export", "--export_type", "openvino"]],
    ids=lambda arguments: arguments[0],
)
def test_anomalib_cli_subcommands_resolve_the_short_name(arguments: list[str]):
    result = subprocess.run(
        [ANOMALIB, *arguments, "--model", "Npgmf", "--model.pre_trained", "false", "--print_config"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "class_path: anomalib_npgmf" in result.stdout


@pytest.mark.parametrize(
    ("model", "class_path"),
    [
        ("InpFormerPlusPlus", "anomalib_npgmf.InpFormerPlusPlus"),
        ("InpFormer", "anomalib.models.InpFormer"),
    ],
)
def test_both_inp_formers_resolve_in_the_anomalib_cli_of_one_environment(model: str, class_path: str):
    result = subprocess.run(
        [ANOMALIB, "train", "--model", model, "--print_config"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"class_path: {class_path}" in result.stdout


def test_a_leftover_start_up_file_without_the_package_is_silent(tmp_path: Path):
    venv = tmp_path / "leftover"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    site_packages = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    ours = Path(sysconfig.get_paths()["purelib"]) / "anomalib_npgmf_startup.pth"
    (site_packages / ours.name).write_text(ours.read_text())
    result = _run("print('ok')", python=python)
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, "ok", "")


def test_the_wheel_ships_the_start_up_files_at_site_packages_level(tmp_path: Path):
    """A normal (non-editable) install gets the hook from these two top-level files of the wheel."""
    import zipfile

    project = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(project)],
        check=True,
        timeout=600,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("anomalib_npgmf-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"anomalib_npgmf_startup.pth", "anomalib_npgmf_startup.start", "anomalib_npgmf/_register.py"} <= names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "[anomalib.models]" in entry_points
    assert "Npgmf = anomalib_npgmf.models.npgmf:Npgmf" in entry_points
    assert "InpFormerPlusPlus = anomalib_npgmf.models.inp_former_pp:InpFormerPlusPlus" in entry_points
