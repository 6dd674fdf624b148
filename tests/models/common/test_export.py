"""Our models export ONNX opset 18 by default (README, "anomalib gaps we fill": anomalib asks for 14).

anomalib 2.7 asks torch's dynamo exporter for opset 14; torch builds opset 18, fails to convert it down and prints a
converter traceback, keeping 18 anyway. So the opset in the file alone would not tell our default from anomalib's:
the test also requires that the export printed no converter error (the noise our default exists to avoid).
"""

import onnx
import pytest
from anomalib.engine import Engine

from ...hardening.conftest import tiny_model

CONVERTER_NOISE = ("version_converter", "No Adapter", "Traceback")


@pytest.mark.parametrize("name", ["Npgmf", "InpFormerPlusPlus"])
def test_onnx_export_uses_opset_18_without_converter_noise(name, tmp_path, capfd):
    engine = Engine(accelerator="cpu", devices=1, logger=False, default_root_dir=tmp_path / "run")
    path = engine.export(tiny_model(name), export_type="onnx", export_root=tmp_path / "export")
    output = "".join(capfd.readouterr())
    default_domain = [entry.version for entry in onnx.load(path).opset_import if entry.domain in ("", "ai.onnx")]
    assert default_domain == [18]
    assert not [marker for marker in CONVERTER_NOISE if marker in output], output[-3000:]


def test_an_explicit_opset_still_wins(tmp_path, monkeypatch):
    """``to_onnx(..., opset_version=N)`` reaches anomalib unchanged; only the default is ours."""
    from anomalib.models.components.base.export_mixin import ExportMixin

    seen = {}

    def fake_to_onnx(self, export_root, model_file_name="model", input_size=None, **kwargs) -> str:
        seen.update(kwargs)
        return str(export_root)

    monkeypatch.setattr(ExportMixin, "to_onnx", fake_to_onnx)
    model = tiny_model("Npgmf")
    model.to_onnx(tmp_path, opset_version=17)
    assert seen["opset_version"] == 17
    model.to_onnx(tmp_path)
    assert seen["opset_version"] == 18
