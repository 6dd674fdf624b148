"""``anomalib-npgmf benchmark ...`` dispatches to the harnesses in ``anomalib_npgmf.benchmarking``."""

import pytest

from anomalib_npgmf.cli import main


def test_benchmark_without_a_name_lists_the_benchmarks(capsys):
    assert main(["benchmark"]) == 2
    assert "expected one of accuracy, speed (got nothing)" in capsys.readouterr().err
    assert main(["benchmark", "sped"]) == 2
    assert "(got 'sped')" in capsys.readouterr().err


def test_benchmark_accuracy_reaches_the_harness_parser(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["benchmark", "accuracy", "--models", "nope"])
    assert stopped.value.code == 2
    assert "unknown model 'nope'; valid: Npgmf" in capsys.readouterr().err
