"""Model names as anomalib's CLI and ``get_model`` know them, and the nearest one to a misspelt name.

anomalib's CLI (jsonargparse) rejects ``--model Npgmff`` with "Parser key model ... Given value: Npgmff" and no
suggestion; :func:`hint_misspelt_cli_model` adds a "did you mean" line before that error (the start-up hook calls it
once our models are registered, so the suggestion covers anomalib's models and ours).
"""

import difflib
import sys


def model_classes() -> dict[str, type]:
    """The models anomalib's CLI and ``get_model`` can find: imported direct ``AnomalibModule`` subclasses (ours too,
    once registered), by class name."""
    from anomalib.models import AnomalibModule

    return {cls.__name__: cls for cls in AnomalibModule.__subclasses__()}


def find_model_class(name: str, classes: dict[str, type]) -> type | None:
    """The class called ``name``, ignoring case and underscores (``npgmf``, ``inp_former_plus_plus``)."""
    wanted = name.replace("_", "").lower()
    return next((cls for class_name, cls in classes.items() if class_name.lower() == wanted), None)


def nearest_model_name(name: str, classes: dict[str, type]) -> str | None:
    """The known class name closest to ``name`` (case-insensitive), or None when nothing is close."""
    by_lower = {class_name.lower(): class_name for class_name in classes}
    close = difflib.get_close_matches(name.replace("_", "").lower(), list(by_lower), n=1)
    return by_lower[close[0]] if close else None


def _cli_model_argument(argv: list[str]) -> str | None:
    for position, argument in enumerate(argv):
        if argument == "--model" and position + 1 < len(argv):
            return argv[position + 1]
        if argument.startswith("--model="):
            return argument.split("=", 1)[1]
    return None


def hint_misspelt_cli_model(argv: list[str] | None = None) -> str | None:
    """Print "did you mean" to stderr when ``--model`` names no known model; returns the hint (None if fine).

    Class paths (``a.b.C``), config files and exact class names are left to anomalib's parser.
    """
    name = _cli_model_argument(list(sys.argv[1:] if argv is None else argv))
    if not name or any(mark in name for mark in (".", "/", "\\", "{")):
        return None
    classes = model_classes()
    if name in classes:
        return None
    suggestion = nearest_model_name(name, classes)
    if suggestion is None:
        return None
    hint = f"anomalib-npgmf: --model {name!r} is not a known model; did you mean {suggestion!r}?"
    print(hint, file=sys.stderr)
    return hint
