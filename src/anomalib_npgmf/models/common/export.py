"""Export defaults shared by our models.

The torch export (anomalib pickles the whole module) is saved with every parameter's ``requires_grad`` off: anomalib's
``TorchInferencer`` runs the model without ``no_grad``, so otherwise each prediction builds an autograd graph and its
scores cannot be turned into numpy arrays (``Can't call numpy() on Tensor that requires grad``).

anomalib 2.7 asks torch's dynamo ONNX exporter for opset 14. torch >= 2.9 builds opset 18 graphs, tries to convert
them down, fails on ``Pad`` and prints a long traceback even though the exported model is fine. Our models default to
opset 18 so users never see that noise; an explicit ``opset_version`` still wins.
"""

from pathlib import Path
from typing import Any

DEFAULT_OPSET = 18


class PluginExportMixin:
    """Mix into an ``AnomalibModule`` subclass (before it in the bases): opset 18 by default, frozen torch export."""

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

    def to_torch(self, export_root: Path | str, model_file_name: str = "model") -> Path:
        """Export like anomalib (pickled module), frozen: predictions from the file need no autograd."""
        parameters = list(self.parameters())  # type: ignore[attr-defined]
        flags = [parameter.requires_grad for parameter in parameters]
        try:
            for parameter in parameters:
                parameter.requires_grad_(False)
            return super().to_torch(export_root, model_file_name)  # type: ignore[misc]
        finally:
            for parameter, flag in zip(parameters, flags, strict=True):
                parameter.requires_grad_(flag)
