"""Accuracy harness (same as ``anomalib-npgmf benchmark accuracy``); the code is in anomalib_npgmf.benchmarking.

    python benchmarks/accuracy/run_accuracy.py --output results/accuracy --seeds 0 1 2 --scenes box pins \
        --models npgmf npgmf_no_global npgmf_no_patch rd padim patchcore inp_former_pp inp_former efficient_ad \
        npgmf_unified

``--help`` lists every model row and option.
"""

from anomalib_npgmf.benchmarking.accuracy import main

if __name__ == "__main__":
    raise SystemExit(main())
