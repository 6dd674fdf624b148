"""Benchmarks shipped with the package (run through ``anomalib-npgmf benchmark ...``), one job per module.

- :mod:`.registry`: the models every benchmark measures, by one name each (settings read from ``configs/``).
- :mod:`.data`: generated scenes / real categories and the datamodules on them.
- :mod:`.training`: anomalib's ``Engine.fit``, timed.
- :mod:`.records`: typed records of what a run measured.
- :mod:`.accuracy`, :mod:`.speed`: the two harnesses and their command lines.
- :mod:`.export`, :mod:`.flops`, :mod:`.cpu_options`: the speed benchmark's exports, FLOPs and Npgmf CPU options.
- :mod:`.runner` starts :mod:`.child`, the measuring subprocess (it imports only :mod:`.measure` and the runtime).
- :mod:`.report`: Markdown / CSV writers.

Importing this package imports nothing heavy: the measuring subprocess imports it.
"""


def failure_reason(error: BaseException) -> str:
    """One line (<= 300 characters) saying why a benchmark row could not be measured."""
    return " ".join(f"{type(error).__name__}: {error}".split())[:300]
