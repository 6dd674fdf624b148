"""Export defaults shared by our models.

The torch export (anomalib pickles the whole module) is saved with every parameter's ``requires_grad`` off: anomalib's
``TorchInferencer`` runs the model without ``no_grad``, so otherwise each prediction builds an autograd graph and its
scores cannot be turned into numpy arrays (``Can't call numpy() on Tensor that requires grad``).

anomalib 2.7 asks torch's dynamo ONNX exporter for opset 14. torch >= 2.9 builds opset 18 graphs, tries to convert
them down, fails on ``Pad`` and prints a long traceback even though the exported model is fine. Our models default to
opset 18 so users never see that noise; an explicit ``opset_version`` still wins.

INT8 post-training quantisation (``--compression_type int8_ptq``) goes through anomalib's calibration (validation
images; held-out training normals where the validation split is the test set, see ``calibration.py``), but a model
may keep parts of its graph in FP32 (:meth:`PluginExportMixin.int8_ignored_scope`): anomaly scores are small
differences of features, and quantising the scoring tail turns them into noise.
"""

import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

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

    def int8_ignored_scope(self, model: Any) -> Any:
        """``nncf.IgnoredScope`` of the OpenVINO ``model`` to keep in FP32 under INT8 PTQ (None: quantise it all)."""
        del model
        return None

    def _post_training_quantization_ov(self, model: Any, datamodule: Any = None) -> Any:
        """anomalib's INT8 PTQ (see :func:`~anomalib_npgmf.utils.compat.post_training_quantization_ov`), honouring
        :meth:`int8_ignored_scope` and never calibrating on test images: without a validation folder
        (``same_as_test``) the held-out training normals calibrate."""
        from anomalib_npgmf.utils.compat import post_training_quantization_ov

        from .calibration import calibration_loader, hold_out_normals

        def loader(prepared: Any) -> Any:
            held_out = hold_out_normals(prepared)
            return prepared.val_dataloader() if held_out is None else calibration_loader(prepared, held_out)

        return post_training_quantization_ov(model, datamodule, self.int8_ignored_scope(model), loader)


def frozen_encoder_convolutions(model: Any, encoder_weight_shapes: Iterable[tuple[int, ...]]) -> set[str]:
    """Names of the OpenVINO ``model``'s convolutions that belong to a frozen encoder, or an empty set.

    Found from the graph's structure, not from exporter-made node names: an encoder convolution has no GroupNorm
    (``MVN``) before it (the trained parts normalise with GroupNorm; BatchNorm of a frozen encoder is folded away),
    and its weight shape is one of the encoder's (``encoder_weight_shapes``, from the torch module), matched in
    topological order. Empty when not every encoder convolution is found that way.
    """
    wanted = Counter(tuple(shape) for shape in encoder_weight_shapes)
    expected = sum(wanted.values())
    after_normalisation: set[str] = set()
    found: set[str] = set()
    for op in model.get_ordered_ops():  # topological order: an op's inputs come before it
        name = op.get_friendly_name()
        parents = [value.get_node().get_friendly_name() for value in op.input_values()]
        if op.get_type_name() in {"MVN", "GroupNormalization"} or after_normalisation.intersection(parents):
            after_normalisation.add(name)
        elif op.get_type_name() == "Convolution":
            shape = tuple(op.input_value(1).get_partial_shape().to_shape())
            if wanted[shape] > 0:
                wanted[shape] -= 1
                found.add(name)
    return found if len(found) == expected else set()


def encoder_only_int8_scope(model: Any, encoder: Any) -> Any:
    """``nncf.IgnoredScope`` keeping everything of the OpenVINO ``model`` but ``encoder``'s convolutions in FP32.

    Measured for Npgmf at 256 px (``benchmarks/speed/RESULTS.md``): quantising everything (anomalib's default) moved the
    image AUROC by -0.15 (score correlation with FP32 0.50): the scores are small teacher-student and prior
    distances, and INT8 noise in the trained decoders is as large. Encoder-only INT8 kept the correlation at
    0.99. The encoder's convolutions are found from the graph's structure (see ``frozen_encoder_convolutions``);
    if they cannot all be found, nothing is quantised rather than everything.
    """
    import nncf
    import torch

    shapes = [tuple(m.weight.shape) for m in encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    found = frozen_encoder_convolutions(model, shapes)
    if not found:
        logger.warning("INT8 export: the encoder's convolutions were not found in the graph; keeping it all FP32")
    keep_fp32 = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_friendly_name() not in found]
    return nncf.IgnoredScope(names=keep_fp32, validate=False)
