"""Start-up hook that makes ``--model Npgmf`` resolve in a plain anomalib 2.7 install.

anomalib 2.7 finds models only among the subclasses of ``AnomalibModule`` that are already imported; it has no
entry-point discovery. The ``anomalib_npgmf_startup.pth`` / ``.start`` file shipped in the wheel calls
:func:`install` at interpreter start. It adds a tiny ``sys.meta_path`` finder that waits for ``anomalib.models`` to be
imported and, right after that module finishes executing, imports :mod:`anomalib_npgmf.models` so our classes exist
as subclasses by the time anomalib's CLI or ``get_model`` looks for them (through
:func:`anomalib_npgmf.utils.compat.after_anomalib_models`, where every patch to anomalib lives).

Rules this module keeps (tested in ``tests/test_register.py``): it imports only :mod:`sys` at start-up, never torch
or anomalib; it costs well under 5 ms; and when anomalib is absent nothing happens at all. Set
``ANOMALIB_NPGMF_NO_HOOK=1`` to switch it off.
"""

import sys

_WATCHED = "anomalib.models"


def _register_plugin_models() -> None:
    """Hand over to :func:`anomalib_npgmf.utils.compat.after_anomalib_models` (imports our models, then anomalib's
    fixes); a failure is reported once, never raised into anomalib's own import."""
    try:
        from anomalib_npgmf.utils.compat import after_anomalib_models
    except Exception as error:
        sys.stderr.write(f"anomalib-npgmf: models not registered ({type(error).__name__}: {error})\n")
        return
    after_anomalib_models()


class _LoaderWrapper:
    """Delegate to the real loader, then register our models once ``anomalib.models`` has executed."""

    def __init__(self, loader: object) -> None:
        self._loader = loader

    def __getattr__(self, name: str) -> object:
        return getattr(self._loader, name)

    def create_module(self, spec: object) -> object:
        return self._loader.create_module(spec)

    def exec_module(self, module: object) -> None:
        self._loader.exec_module(module)
        _register_plugin_models()


class _AnomalibModelsFinder:
    """Meta-path finder that only reacts to ``anomalib.models`` and otherwise stays out of the way."""

    _busy = False

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> object:
        if fullname != _WATCHED or self._busy:
            return None
        self._busy = True
        try:
            from importlib.util import find_spec

            spec = find_spec(fullname)
        finally:
            self._busy = False
        if spec is None or spec.loader is None:
            return None
        spec.loader = _LoaderWrapper(spec.loader)
        return spec


def install() -> None:
    """Arrange for our models to be imported right after ``anomalib.models`` (idempotent)."""
    if _env_disabled():
        return
    if _WATCHED in sys.modules:  # anomalib already imported (hook installed late, e.g. in a notebook)
        _register_plugin_models()
        return
    if not any(isinstance(finder, _AnomalibModelsFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AnomalibModelsFinder())


def _env_disabled() -> bool:
    import os

    return os.environ.get("ANOMALIB_NPGMF_NO_HOOK", "") not in ("", "0")
