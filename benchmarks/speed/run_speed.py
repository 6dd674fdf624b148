"""CPU speed benchmark: torch eager vs OpenVINO FP32 / bf16 / INT8 for Npgmf, InpFormerPlusPlus and anomalib's models.

    python benchmarks/speed/run_speed.py --output results/speed \
        --models Npgmf InpFormerPlusPlus ReverseDistillation Patchcore InpFormer --image-size 256 --epochs 1

Same as ``anomalib-npgmf benchmark speed ...``; the logic lives in :mod:`anomalib_npgmf.benchmarking.speed` (its
docstring says what is measured and how). Writes ``speed.md``, ``speed.csv``, ``training.csv`` and
``npgmf_cpu_options.csv`` under ``--output``.
"""

from anomalib_npgmf.benchmarking.speed import main

raise SystemExit(main())
