"""Benchmarks shipped with the package (run through ``anomalib-npgmf benchmark ...``)."""


def failure_reason(error: BaseException) -> str:
    """One line (<= 300 characters) saying why a benchmark row could not be measured."""
    return " ".join(f"{type(error).__name__}: {error}".split())[:300]
