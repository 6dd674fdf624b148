"""Pretrained weights from local files only, with errors that say exactly which file to supply.

Machines behind firewalls cannot download backbones at run time, and a hub download that fails deep inside timm or
open_clip prints a traceback that names neither the file nor the parameter. Every pretrained component of our models
goes through :func:`resolve_weights_file`: with ``pre_trained=True`` it wants a local file (a parameter, or the
environment variable named in the message); without one it fails at construction, before any training starts.
"""

import os
from pathlib import Path

import timm
import torch
from torch import nn

WEIGHTS_DIR_ENV = "ANOMALIB_NPGMF_WEIGHTS_DIR"


class MissingWeightsError(FileNotFoundError):
    """A pretrained component was requested but its local weights file is missing."""


def resolve_weights_file(
    component: str,
    architecture: str,
    weights_path: str | Path | None,
    parameter: str,
    expected_name: str,
) -> Path:
    """Find the local weights file of one pretrained component, or fail with instructions.

    Args:
        component: What the weights are for, e.g. ``"backbone"`` (used in the message).
        architecture: Architecture name, e.g. ``"resnet101"``.
        weights_path: Value of the model's weights parameter (file path), or ``None``.
        parameter: Name of that parameter, e.g. ``"backbone_weights"``.
        expected_name: File name looked for in ``$ANOMALIB_NPGMF_WEIGHTS_DIR`` when ``weights_path`` is ``None``.

    Returns:
        Path of an existing file.
    """
    candidates: list[Path] = []
    if weights_path is not None:
        candidates.append(Path(weights_path).expanduser())
    elif os.environ.get(WEIGHTS_DIR_ENV):
        candidates.append(Path(os.environ[WEIGHTS_DIR_ENV]).expanduser() / expected_name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = f" Looked for: {', '.join(str(c) for c in candidates)}." if candidates else ""
    msg = (
        f"pre_trained=True needs the {component} weights of '{architecture}' as a local file, and none was found."
        f"{looked} Download '{expected_name}' on a machine with internet access (timm/open_clip name it this way) "
        f"and pass it with `{parameter}=/path/to/{expected_name}` (CLI: `--model.{parameter} /path/to/"
        f"{expected_name}`), or put it in the folder named by ${WEIGHTS_DIR_ENV}. To train from random "
        f"initialisation instead, set `pre_trained=False`."
    )
    raise MissingWeightsError(msg)


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` or torch state-dict file, refusing pickled objects."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        msg = f"weights file {path} holds a {type(state).__name__}, expected a state dict of tensors"
        raise TypeError(msg)
    return state


def create_timm_encoder(
    architecture: str,
    pre_trained: bool,
    weights_path: str | Path | None,
    parameter: str = "backbone_weights",
    **timm_kwargs: object,
) -> nn.Module:
    """Build a timm model, loading pretrained weights from a local file only.

    ``pre_trained=False`` gives a random initialisation (tests and the demo); ``pre_trained=True`` needs a file and
    fails at once without one (see :func:`resolve_weights_file`). A file of the wrong architecture fails with the
    parameter named and the mismatching keys listed, not a raw ``load_state_dict`` traceback.
    """
    try:
        model = timm.create_model(architecture, pretrained=False, **timm_kwargs)
    except RuntimeError as error:  # timm raises RuntimeError("Unknown model ...")
        msg = f"unknown backbone '{architecture}': {error}. Pick a timm model name (timm.list_models())."
        raise ValueError(msg) from error
    if not pre_trained:
        return model
    path = resolve_weights_file("backbone", architecture, weights_path, parameter, f"{architecture}.safetensors")
    state = load_state_dict_file(path)
    target = model.state_dict()
    # features_only wrappers drop the classifier (and, with out_indices, the deepest stages): those weights have no
    # place in the wrapper and are skipped; anything else the file holds means it is another architecture.
    skipped_prefixes = _prefixes_without_place(model, timm_kwargs)
    usable = {key: value for key, value in state.items() if key in target}
    missing = [key for key in target if key not in usable]
    unexpected = [key for key in state if key not in target and not key.startswith(skipped_prefixes)]
    wrong_shape = [key for key, value in usable.items() if value.shape != target[key].shape]
    if missing or unexpected or wrong_shape:
        detail = ", ".join((missing + unexpected + wrong_shape)[:5])
        msg = (
            f"{parameter}={path} does not fit backbone '{architecture}': {len(missing)} tensors missing, "
            f"{len(unexpected)} unexpected and {len(wrong_shape)} of another shape (e.g. {detail}). Supply the weights "
            f"of '{architecture}'."
        )
        raise ValueError(msg)
    model.load_state_dict(usable, strict=False)
    return model


def _prefixes_without_place(model: nn.Module, timm_kwargs: dict) -> tuple[str, ...]:
    """State-dict prefixes a (features-only) timm model legitimately lacks: its classifier and final norm/head."""
    if not timm_kwargs.get("features_only"):
        return ()
    config = getattr(model, "pretrained_cfg", None) or {}
    classifier = config.get("classifier")
    names = [classifier] if isinstance(classifier, str) else list(classifier or [])
    return tuple(f"{name}." for name in [*names, "head", "fc", "classifier", "global_pool"])
