"""One direction of dependencies inside the package, checked statically.

utils <- ground_truth (LOCO reader) <- metrics <- data / models <- deploy / evaluate / benchmarking / cli / hook.
Every ``import`` statement of every module is parsed with ``ast`` (those inside functions and ``TYPE_CHECKING`` blocks
too: a lazy import is still a dependency), mapped to the layer of the module it names, and an import that points
upward, or sideways between ``data`` and ``models``, fails the test. A module this table does not place fails too,
so a new top-level module has to be given a layer.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = "anomalib_npgmf"
SOURCE = Path(__file__).resolve().parents[1] / "src" / PACKAGE

# component (first name below the package; "" is the package's own __init__) -> layer
LAYERS = {
    "": 0,
    "utils": 0,
    "ground_truth": 1,
    "metrics": 2,
    "data": 3,
    "models": 3,
    "deploy": 4,
    "evaluate": 4,
    "benchmarking": 4,
    "cli": 4,
    "_register": 4,
}
APPLICATIONS = 4  # the top layer: entry points that may call one another (cli -> evaluate -> deploy)


def module_name(path: Path, root: Path = SOURCE) -> str:
    """Dotted name of the module in ``path`` (a package's ``__init__`` is the package)."""
    parts = [PACKAGE, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path = SOURCE) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path`` that names a module of this package."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # ``from package import module`` depends on that module, not only on the package
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names if _is_module(target, alias.name)]
    return [(line, target) for line, target in found if target == PACKAGE or target.startswith(f"{PACKAGE}.")]


def _is_module(package: str, name: str) -> bool:
    folder = SOURCE.joinpath(*package.split(".")[1:])
    return (folder / f"{name}.py").is_file() or (folder / name / "__init__.py").is_file()


def component(module: str) -> str:
    """``anomalib_npgmf.metrics.loco`` -> ``metrics``; the package itself -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def violations(root: Path = SOURCE) -> list[str]:
    """Every import that points upward or sideways, as ``file:line: a (layer) -> b (layer)``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        source = component(module_name(path, root))
        if source not in LAYERS:
            found.append(f"{path.relative_to(root)}: module '{source}' has no layer in tests/test_layers.py")
            continue
        for line, target_module in imported_modules(path, root):
            target = component(target_module)
            if target not in LAYERS:
                found.append(f"{path.relative_to(root)}:{line}: imports {target_module}, which has no layer")
                continue
            upward = LAYERS[target] > LAYERS[source]
            sideways = LAYERS[target] == LAYERS[source] < APPLICATIONS and target not in {source, ""} and source != ""
            if upward or sideways:
                found.append(
                    f"{path.relative_to(root)}:{line}: {source} (layer {LAYERS[source]}) imports "
                    f"{target_module} (layer {LAYERS[target]})"
                )
    return found


def test_every_import_points_down_the_layers() -> None:
    problems = violations()
    assert not problems, "imports against the layering:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("importer", "statement"),
    [
        ("metrics/loco.py", "from anomalib_npgmf.data.mvtec_loco import anomaly_type_of"),  # metrics -> data
        ("metrics/per_category.py", "def f():\n    from anomalib_npgmf.models.common import x\n"),  # lazy import
        ("data/items.py", "from ..models import Npgmf"),  # relative, sideways
        ("utils/io.py", "from anomalib_npgmf import metrics"),  # package-relative module import
    ],
)
def test_the_check_catches_an_upward_import(tmp_path: Path, importer: str, statement: str) -> None:
    """The checker itself: a planted upward import in a copy of the tree is reported with its file."""
    root = tmp_path / PACKAGE
    for path in SOURCE.rglob("*.py"):
        target = root / path.relative_to(SOURCE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    planted = root / importer
    planted.write_text(planted.read_text() + "\n" + statement + "\n")
    assert any(problem.startswith(importer) for problem in violations(root))
