"""Every patch to another library (``anomalib_npgmf.utils.compat``) fails here when its target changes.

The recorded hashes are of anomalib 2.7.0's sources: after an upgrade, read the changed target, re-check the patch
that names it in ``PATCH_TARGETS`` (still needed? still right?), then record the new hash.
"""

import ast
import inspect
from pathlib import Path

import pytest

from anomalib_npgmf.utils import compat

SOURCE = Path(compat.__file__).resolve().parents[1]


@pytest.mark.parametrize("target", sorted(compat.PATCH_TARGETS))
def test_patched_target_is_the_one_we_read(target: str) -> None:
    assert compat.source_hash(target) == compat.PATCH_TARGETS[target], (
        f"{target} changed since we patched it: re-check anomalib_npgmf.utils.compat, then update PATCH_TARGETS"
    )


def test_seed_wrapper_target_is_what_the_cli_calls_before_instantiating() -> None:
    from anomalib.cli import cli

    assert "update_config(self.config[subcommand])" in inspect.getsource(cli.AnomalibCLI.before_instantiate_classes)
    assert list(inspect.signature(inspect.unwrap(cli.update_config)).parameters) == ["config"]


def test_ptq_override_keeps_anomalibs_signature() -> None:
    from anomalib.models.components.base.export_mixin.mixin import ExportMixin

    from anomalib_npgmf.models.common import PluginExportMixin

    theirs = list(inspect.signature(ExportMixin._post_training_quantization_ov).parameters)
    ours = list(inspect.signature(PluginExportMixin._post_training_quantization_ov).parameters)
    assert theirs == ["model", "datamodule"] and ours == ["self", *theirs]
    assert "self._post_training_quantization_ov(model, datamodule)" in inspect.getsource(ExportMixin)


def test_timm_random_init_is_scoped() -> None:
    import timm
    from anomalib.models.components.feature_extractors import timm as extractor_module

    create_model = timm.create_model
    with compat.timm_random_init():
        assert timm.create_model is create_model  # the process-wide function is never replaced
        assert extractor_module.timm.create_model != create_model
        model = extractor_module.timm.create_model("resnet18", pretrained=True, num_classes=0)  # no download
    assert extractor_module.timm is timm
    assert model is not None


def test_no_module_outside_compat_assigns_to_another_librarys_attribute() -> None:
    """A patch is an assignment to an attribute of an imported third-party module: only compat may do it."""
    offenders = []
    for path in sorted(SOURCE.rglob("*.py")):
        if path.name == "compat.py":
            continue
        tree = ast.parse(path.read_text())
        third_party = {
            alias.asname or alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom) and not getattr(node, "level", 0)
            for alias in node.names
            if not (getattr(node, "module", None) or alias.name).startswith("anomalib_npgmf")
        }
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                base = target
                while isinstance(base, ast.Attribute):
                    base = base.value
                if isinstance(target, ast.Attribute) and isinstance(base, ast.Name) and base.id in third_party:
                    offenders.append(f"{path.relative_to(SOURCE)}:{node.lineno}")
    assert not offenders, f"patches outside utils/compat.py: {offenders}"
