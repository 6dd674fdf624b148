"""Export defaults shared by our models.

anomalib 2.7 asks torch's dynamo ONNX exporter for opset 14. torch >= 2.9 builds opset 18 graphs, tries to convert
them down, fails on ``Pad`` and prints a long traceback even though the exported model is fine. Our models default to
opset 18 so users never see that noise; an explicit ``opset_version`` still wins.
"""

from pathlib import Path
from typing import Any

DEFAULT_OPSET = 18


class PluginExportMixin:
    """Mix into an ``AnomalibModule`` subclass (before it in the bases) to export with opset 18 by default."""

    def to_onnx(
        self,
        export_root: Path | str,
        model_file_name: str = "model",
        input_size: tuple[int, int] | None = None,
        **kwargs: Any,
    ) -> Path:
        """Export to ONNX like anomalib does, with ``opset_version=18`` unless the caller sets one."""
        kwargs.setdefault("opset_version", DEFAULT_OPSET)
        return super().to_onnx(export_root, model_file_name, input_size, **kwargs)  # type: ignore[misc]
