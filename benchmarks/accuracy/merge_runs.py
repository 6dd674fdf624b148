"""Merge several accuracy-harness outputs (e.g. one per ``--data-seed``) into one mean ± spread table.

The harness takes one data seed per invocation; issue 18 asks for spreads over new images too, so each data seed is
its own ``--output`` folder and this script pools their ``runs.csv`` (spread = sample standard deviation over every
data seed x init seed run of a row):

    python benchmarks/accuracy/merge_runs.py --output merged OUT_d0 OUT_d1 ...

Writes ``merged/accuracy.md``, ``accuracy.csv`` and ``runs.csv`` (with a ``data_seed`` column read from each
folder's ``data/*/generation.json``). Model names are the registry's (older spellings such as ``rd`` are resolved).
"""

import argparse
import csv
import io
import json
from pathlib import Path

from anomalib_npgmf.benchmarking.accuracy import METRICS
from anomalib_npgmf.benchmarking.registry import resolve
from anomalib_npgmf.benchmarking.report import summarise
from anomalib_npgmf.utils import atomic_write_text


def _data_seed(folder: Path) -> str:
    seeds = {json.loads(p.read_text())["seed"] for p in folder.glob("data/*/generation.json")}
    return ",".join(str(seed) for seed in sorted(seeds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="harness --output folders")
    parser.add_argument("--output", type=Path, required=True)
    arguments = parser.parse_args(argv)
    runs: list[dict] = []
    for folder in arguments.folders:
        data_seed = _data_seed(folder)
        for row in csv.DictReader((folder / "runs.csv").open()):
            figures = {metric: float(row[metric]) if row[metric] else float("nan") for metric in METRICS}
            runs.append({**row, **figures, "model": resolve(row["model"]), "data_seed": data_seed})
    markdown, table_csv = summarise(runs)
    buffer = io.StringIO()
    fields = ["model", "scene", "data_seed", "seed", *METRICS, "note"]
    writer = csv.DictWriter(buffer, fieldnames=fields, restval="", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(runs)
    atomic_write_text(arguments.output / "accuracy.md", markdown)
    atomic_write_text(arguments.output / "accuracy.csv", table_csv)
    atomic_write_text(arguments.output / "runs.csv", buffer.getvalue())
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
