"""Benchmarks shipped with the package (run through ``anomalib-npgmf benchmark ...``)."""
