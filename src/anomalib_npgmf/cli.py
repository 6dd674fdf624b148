"""``anomalib-npgmf``: the extras around anomalib's own CLI (training itself stays ``anomalib train``).

Subcommands import what they need lazily, so ``anomalib-npgmf --help`` answers at once.
"""

import argparse
import sys
from collections.abc import Callable


def _generate(argv: list[str]) -> int:
    from anomalib_npgmf.data.synthetic import main_generate

    return main_generate(argv)


def _evaluate(argv: list[str]) -> int:
    from anomalib_npgmf.evaluate import main_evaluate

    return main_evaluate(argv)


def _predict_openvino(argv: list[str]) -> int:
    from anomalib_npgmf.deploy import main_predict_openvino

    return main_predict_openvino(argv)


BENCHMARKS = ("accuracy", "speed")


def _benchmark(argv: list[str]) -> int:
    """``benchmark accuracy ...`` / ``benchmark speed ...``: the harnesses in ``anomalib_npgmf.benchmarking``."""
    if not argv or argv[0] not in BENCHMARKS:
        given = f"got {argv[0]!r}" if argv else "got nothing"
        print(f"anomalib-npgmf benchmark: expected one of {', '.join(BENCHMARKS)} ({given})", file=sys.stderr)
        return 0 if argv and argv[0] in {"-h", "--help"} else 2
    import importlib

    return importlib.import_module(f"anomalib_npgmf.benchmarking.{argv[0]}").main(argv[1:])


SUBCOMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "generate": (_generate, "write the synthetic MVTec-LOCO-layout demo dataset"),
    "evaluate": (_evaluate, "LOCO table (image AUROC, AU-sPRO; logical/structural) + heatmap grids for a model"),
    "benchmark": (_benchmark, "accuracy (LOCO table vs baselines and ablations) or speed (torch vs OpenVINO)"),
    "predict-openvino": (_predict_openvino, "score images with an exported OpenVINO model and save heatmaps"),
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``anomalib-npgmf <subcommand> ...``; each subcommand has its own ``--help``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="anomalib-npgmf",
        description="Extras of anomalib-npgmf. Train, test, export and predict with `anomalib ... --model Npgmf`.",
    )
    parser.add_argument(
        "subcommand",
        choices=sorted(SUBCOMMANDS),
        help="; ".join(f"{name}: {text}" for name, (_, text) in sorted(SUBCOMMANDS.items())),
    )
    if not argv or argv[0] in {"-h", "--help"}:
        parser.print_help()
        return 0 if argv else 2
    arguments = parser.parse_args(argv[:1])
    handler, _ = SUBCOMMANDS[arguments.subcommand]
    try:
        return handler(argv[1:])
    except (FileNotFoundError, ValueError, FileExistsError, PermissionError, OSError) as error:
        print(f"anomalib-npgmf {arguments.subcommand}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
