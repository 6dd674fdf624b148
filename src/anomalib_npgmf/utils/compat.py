"""Every place where we change or re-implement another library's code, in one module.

Each patch names its target in :data:`PATCH_TARGETS` with a hash of the target's source as we read it
(anomalib 2.7.0, timm 1.x); ``tests/test_compat.py`` recomputes the hashes, so an upgrade that changes a target fails
there, naming the patch to re-check, instead of silently changing behaviour.

- :func:`after_anomalib_models`: what the start-up hook (:mod:`anomalib_npgmf._register`, which imports only
  ``sys``) runs right after ``anomalib.models`` has executed: import our models and LOCO datamodule, make
  ``--seed_everything`` seed, suggest a name for a misspelt ``--model``.
- :func:`honour_cli_seed`: wraps anomalib's ``update_config``, because anomalib 2.7's CLI parses
  ``--seed_everything N`` but never seeds.
- :func:`post_training_quantization_ov`: anomalib's private ``ExportMixin._post_training_quantization_ov`` with an
  ``ignored_scope`` and a calibration set that never holds test images.
- :func:`timm_random_init`: anomalib's ``InpFormer`` always asks timm for pretrained weights; inside this context
  its feature extractor gets random weights instead (offline benchmarks).

No module of ours imports torch or anomalib at import time through here: every third-party import is inside a
function.
"""

import hashlib
import inspect
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

logger = logging.getLogger(__name__)

_SEEDS_MARKER = "_anomalib_npgmf_seeds"
# What the start-up hook registers: our models, and our LOCO datamodule, so that ``--model Npgmf`` and
# ``--data MVTecLOCORegions`` resolve as short names (jsonargparse looks among the imported subclasses only).
PLUGIN_MODULES = ("anomalib_npgmf.models", "anomalib_npgmf.data.mvtec_loco")

# patched or re-implemented target -> sha256 (first 16 hex digits) of its source as we read it
PATCH_TARGETS: dict[str, str] = {
    # honour_cli_seed: the wrapped function, and the CLI method that calls it right before instantiation
    "anomalib.utils.config:update_config": "7a1238a539c1e859",
    "anomalib.cli.cli:AnomalibCLI.before_instantiate_classes": "95129c24db393522",
    # post_training_quantization_ov re-implements this private static method (and PluginExportMixin overrides it)
    "anomalib.models.components.base.export_mixin.mixin:ExportMixin._post_training_quantization_ov": "129a487ccb113093",
    # timm_random_init: InpFormerModel asks for pre_trained=True; TimmFeatureExtractor calls timm.create_model
    "anomalib.models.image.inp_former.torch_model:InpFormerModel.__init__": "40d424125577f1b7",
    "anomalib.models.components.feature_extractors.timm:TimmFeatureExtractor.__init__": "ba8c1b4a66c197a9",
}


def source_hash(target: str) -> str:
    """sha256 (16 hex digits) of the source of ``module:attribute.path``; raises when the target is gone."""
    module_name, _, attribute_path = target.partition(":")
    value: Any = __import__(module_name, fromlist=["_"])
    for part in attribute_path.split("."):
        value = getattr(value, part)
    return hashlib.sha256(inspect.getsource(inspect.unwrap(value)).encode()).hexdigest()[:16]


def after_anomalib_models() -> None:
    """Run by the start-up hook once ``anomalib.models`` has executed; a failure is reported, never raised."""
    try:
        for module in PLUGIN_MODULES:
            __import__(module)
    except Exception as error:
        sys.stderr.write(f"anomalib-npgmf: models not registered ({type(error).__name__}: {error})\n")
        return
    honour_cli_seed()
    if "anomalib.cli.cli" in sys.modules:  # anomalib's CLI is starting: suggest a name for a misspelt --model
        try:
            from anomalib_npgmf.utils.model_names import hint_misspelt_cli_model

            hint_misspelt_cli_model()
        except Exception:  # a hint must never break anomalib's CLI
            pass


def _get(config: Any, key: str) -> Any:
    try:
        return config.get(key)
    except (AttributeError, TypeError):
        return getattr(config, key, None)


def _seeding(update_config: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``update_config`` that first seeds with an integer ``seed_everything`` (``True``, "a random seed", is left)."""

    def update_config_and_seed(config: Any) -> Any:
        seed = _get(config, "seed_everything")
        if isinstance(seed, int) and not isinstance(seed, bool):
            from lightning.pytorch import seed_everything

            seed_everything(seed, workers=True)
        return update_config(config)

    setattr(update_config_and_seed, _SEEDS_MARKER, True)
    update_config_and_seed.__wrapped__ = update_config  # type: ignore[attr-defined]
    update_config_and_seed.__doc__ = update_config.__doc__
    return update_config_and_seed


def honour_cli_seed(force: bool = False) -> bool:
    """Make ``anomalib fit/train/test ... --seed_everything N`` seed before the model is built.

    anomalib 2.7's CLI declares ``--seed_everything`` ("run seed_everything with this value before classes
    instantiation") but nothing calls ``seed_everything``: two identical runs started from different initial weights
    (measured). The CLI calls ``update_config(config[subcommand])`` right before it instantiates the classes, so the
    wrapper seeds there. Runs only inside the anomalib CLI (``anomalib.cli.cli`` imported or being imported) unless
    ``force``; idempotent. Returns whether the wrapper is in place.
    """
    if not force and "anomalib.cli.cli" not in sys.modules:
        return False
    try:
        import anomalib.utils.config as config_module
    except ImportError:  # anomalib absent or broken: nothing to fix
        return False
    if not getattr(config_module.update_config, _SEEDS_MARKER, False):
        config_module.update_config = _seeding(config_module.update_config)
    # The CLI module binds the name at import; when it was bound before us, rebind it there too.
    cli_module = sys.modules.get("anomalib.cli.cli")
    bound = getattr(cli_module, "update_config", None)
    if bound is not None and not getattr(bound, _SEEDS_MARKER, False):
        cli_module.update_config = _seeding(bound)
    return True


def post_training_quantization_ov(model: Any, datamodule: Any, ignored_scope: Any, calibration_loader: Any) -> Any:
    """anomalib's ``ExportMixin._post_training_quantization_ov`` (INT8 PTQ), with two changes of ours.

    ``ignored_scope`` (an ``nncf.IgnoredScope`` or None) keeps parts of the graph in FP32, and the caller's
    ``calibration_loader`` (a function of the set-up datamodule) picks the calibration images. Batch size, the
    ">300 images" warning and the ``nncf.Dataset`` transform are anomalib's.
    """
    import nncf

    if datamodule is None:
        msg = "INT8_PTQ export needs a datamodule (its validation images calibrate the quantisers): pass --data"
        raise ValueError(msg)
    datamodule.setup("fit")
    if model.input(0).partial_shape[0].is_static:
        datamodule.train_batch_size = model.input(0).shape[0]
    loader = calibration_loader(datamodule)
    if len(loader.dataset) < 300:  # as anomalib warns
        logger.warning(f">300 images recommended for INT8 quantization, found only {len(loader.dataset)} images")
    calibration = nncf.Dataset(loader, lambda batch: batch["image"])
    return nncf.quantize(model, calibration, ignored_scope=ignored_scope)


class _RandomInitTimm:
    """Stands for the ``timm`` module inside anomalib's feature extractor: ``create_model`` without weights."""

    def __init__(self, timm_module: Any) -> None:
        self._timm = timm_module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._timm, name)

    def create_model(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["pretrained"] = False
        return self._timm.create_model(*args, **kwargs)


@contextmanager
def timm_random_init() -> Iterator[None]:
    """Inside the block, anomalib's ``TimmFeatureExtractor`` builds its backbone with random weights.

    anomalib's ``InpFormerModel`` passes ``pre_trained=True`` unconditionally (a download, impossible offline). Only
    the name ``timm`` inside ``anomalib.models.components.feature_extractors.timm`` is replaced, and only for the
    block: ``timm.create_model`` itself stays untouched for every other caller in the process.
    """
    from anomalib.models.components.feature_extractors import timm as extractor_module

    original = extractor_module.timm
    extractor_module.timm = _RandomInitTimm(original)
    try:
        yield
    finally:
        extractor_module.timm = original
