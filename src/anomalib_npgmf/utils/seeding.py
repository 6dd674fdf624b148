"""Make ``anomalib fit/train/test ... --seed_everything N`` actually seed.

anomalib 2.7's CLI declares ``--seed_everything`` ("run seed_everything with this value before classes
instantiation") and our configs set it, but nothing ever calls ``seed_everything``: the model is built with an
unseeded RNG and the training data is shuffled differently on every run, so two identical ``anomalib train`` runs give
different scores (measured: different encoder initial weights between two runs). The CLI calls
``anomalib.utils.config.update_config(config[subcommand])`` right before it instantiates the model, with the parsed
``seed_everything`` in that namespace; we wrap that function so that an integer seed is applied there, exactly where
anomalib's help says it is. ``True`` (anomalib's default: "a random seed") is left as it is.
"""

import sys
from collections.abc import Callable
from typing import Any

_MARKER = "_anomalib_npgmf_seeds"


def _seeding(update_config: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def update_config_and_seed(config: Any) -> Any:
        seed = _get(config, "seed_everything")
        if isinstance(seed, int) and not isinstance(seed, bool):
            from lightning.pytorch import seed_everything

            seed_everything(seed, workers=True)
        return update_config(config)

    setattr(update_config_and_seed, _MARKER, True)
    update_config_and_seed.__wrapped__ = update_config  # type: ignore[attr-defined]
    update_config_and_seed.__doc__ = update_config.__doc__
    return update_config_and_seed


def _get(config: Any, key: str) -> Any:
    try:
        return config.get(key)
    except (AttributeError, TypeError):
        return getattr(config, key, None)


def honour_cli_seed(force: bool = False) -> bool:
    """Wrap anomalib's ``update_config`` so the CLI's ``--seed_everything N`` seeds before the model is built.

    Runs only inside the anomalib CLI (``anomalib.cli.cli`` imported or being imported), unless ``force``; idempotent.
    Returns whether the wrapper is in place.
    """
    if not force and "anomalib.cli.cli" not in sys.modules:
        return False
    try:
        import anomalib.utils.config as config_module
    except ImportError:  # anomalib absent or broken: nothing to fix
        return False
    if not getattr(config_module.update_config, _MARKER, False):
        config_module.update_config = _seeding(config_module.update_config)
    # The CLI module binds the name at import; when it was bound before us, rebind it there too.
    cli_module = sys.modules.get("anomalib.cli.cli")
    bound = getattr(cli_module, "update_config", None)
    if bound is not None and not getattr(bound, _MARKER, False):
        cli_module.update_config = _seeding(bound)
    return True
