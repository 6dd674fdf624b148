"""Start-up cost of the registration hook: interpreter start with and without it.

    python benchmarks/startup/bench_hook.py [--runs 30]

Prints (1) the cumulative ``-X importtime`` of ``anomalib_npgmf._register`` (what the .pth line costs), min and
median over runs, and (2) wall time of ``python -c pass`` with the hook and with ``ANOMALIB_NPGMF_NO_HOOK=1``.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time


def hook_import_us() -> int:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "pass"], capture_output=True, text=True, check=True
    )
    for line in result.stderr.splitlines():
        if line.rstrip().endswith("anomalib_npgmf._register"):
            return int(line.split("|")[1])
    msg = "the hook did not run: is anomalib-npgmf installed in this interpreter?"
    raise SystemExit(msg)


def start_seconds(disabled: bool) -> float:
    env = {**os.environ, "ANOMALIB_NPGMF_NO_HOOK": "1" if disabled else "0"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    imports = [hook_import_us() for _ in range(runs)]
    with_hook = [start_seconds(False) for _ in range(runs)]
    without = [start_seconds(True) for _ in range(runs)]
    print(f"runs: {runs}, python {sys.version.split()[0]}")
    print(
        f"hook import (cumulative -X importtime): min {min(imports) / 1000:.2f} ms, "
        f"median {statistics.median(imports) / 1000:.2f} ms"
    )
    print(f"python -c pass with hook:    median {statistics.median(with_hook) * 1000:.1f} ms")
    print(
        f"python -c pass hook disabled: median {statistics.median(without) * 1000:.1f} ms "
        "(the .pth line still runs; the env check returns early)"
    )


if __name__ == "__main__":
    main()
