"""Shared by the benchmark tests: loading a script of ``benchmarks/accuracy/`` (not a package) as a module."""

import importlib.util
from pathlib import Path
from types import ModuleType

ACCURACY_SCRIPTS = Path(__file__).resolve().parents[2] / "benchmarks" / "accuracy"


def load_accuracy_script(name: str) -> ModuleType:
    """``benchmarks/accuracy/<name>.py`` imported as a module, so its functions can be tested one by one."""
    spec = importlib.util.spec_from_file_location(name, ACCURACY_SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
