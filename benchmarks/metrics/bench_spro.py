"""Speed and peak memory of the streaming AU-sPRO (the metric ``anomalib test`` uses on LOCO).

    python benchmarks/metrics/bench_spro.py --images 1000 --height 256 --width 256
    python benchmarks/metrics/bench_spro.py --images 1500 --height 1100 --width 1600   # full MVTec LOCO size

Random maps; every other image anomalous with 1-3 random rectangular regions (relative saturation 1.0). Prints wall
time, images/s and the peak RSS of this process.
"""

import argparse
import resource
import time

import numpy as np
import torch

from anomalib_npgmf.metrics import StreamingSPRO


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--map-scale", type=int, default=1, help="maps at 1/scale of the mask size (resized)")
    arguments = parser.parse_args()
    rng = np.random.default_rng(0)
    metric = StreamingSPRO()
    start = time.perf_counter()
    h, w = arguments.height, arguments.width
    for index in range(arguments.images):
        anomaly_map = torch.from_numpy(
            rng.random((h // arguments.map_scale, w // arguments.map_scale), dtype=np.float32)
        )
        regions = []
        if index % 2:
            for _ in range(int(rng.integers(1, 4))):
                mask = np.zeros((h, w), bool)
                y, x = int(rng.integers(0, h - h // 8)), int(rng.integers(0, w - w // 8))
                mask[y : y + h // 8, x : x + w // 8] = True
                regions.append((mask, float(mask.sum())))
        metric.update([anomaly_map], [regions])
    value = float(metric.compute())
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"| {arguments.images} maps | {h}x{w} | {seconds:.1f} s | {arguments.images / seconds:.1f} img/s | "
        f"{peak_mb:.0f} MB peak RSS | AU-sPRO {value:.4f} |"
    )


if __name__ == "__main__":
    main()
