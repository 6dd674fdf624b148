"""Map normalisation on normal images, stored as buffers so it is part of the exported graph.

Each branch's raw map lives on its own scale; fusing them needs a common one. As in EfficientAD, the q_a quantile of
the map values on held-out normal images maps to 0 and the q_b quantile to 0.1. The constants are buffers: saved in
checkpoints, traced into ONNX/OpenVINO, identical on every DDP rank (fitted on gathered, de-duplicated maps).
"""

import numpy as np
import torch
from torch import nn

# Smallest normal-image spread (q_b - q_a) relative to the values' magnitude that the normalisation divides by. With
# it, a relative difference e between two backends becomes at most 0.1 * e / SPREAD_FLOOR in normalised units:
# 1e-4 for e = 1e-6, the bound the export parity tests hold.
SPREAD_FLOOR = 1e-3


class QuantileMapNormalizer(nn.Module):
    """Affine map normalisation ``0.1 * (x - q_a) / (q_b - q_a)`` fitted from normal-image maps.

    Args:
        low_quantile: Quantile of normal map values sent to 0 (EfficientAD: 0.9).
        high_quantile: Quantile of normal map values sent to 0.1 (EfficientAD: 0.995).
    """

    def __init__(self, low_quantile: float = 0.9, high_quantile: float = 0.995) -> None:
        super().__init__()
        if not 0.0 <= low_quantile < high_quantile <= 1.0:
            msg = (
                f"quantiles must satisfy 0 <= low_quantile < high_quantile <= 1, got {low_quantile} and {high_quantile}"
            )
            raise ValueError(msg)
        self.low_quantile = low_quantile
        self.high_quantile = high_quantile
        self.register_buffer("q_low", torch.tensor(0.0))
        self.register_buffer("q_high", torch.tensor(1.0))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, maps: list[torch.Tensor] | torch.Tensor) -> None:
        """Set the constants from maps of normal images (any shapes; all values pooled)."""
        values = torch.cat([m.detach().reshape(-1).float().cpu() for m in maps]) if isinstance(maps, list) else maps
        values = values.reshape(-1).double().numpy()
        if values.size == 0 or not np.isfinite(values).all():
            msg = "cannot fit map normalisation: the normal-image maps are empty or contain NaN/Inf values"
            raise ValueError(msg)
        q_low, q_high = np.quantile(values, [self.low_quantile, self.high_quantile])
        # A spread of normal values below SPREAD_FLOOR of their magnitude is float32 noise, not signal: dividing by it
        # would turn rounding (and torch-vs-OpenVINO differences of ~1e-6 relative) into score differences of 1e-2 and
        # more (issue 13: a global prior with 10 training images had q_b - q_a = 1e-6 * q_a). A constant map (e.g. an
        # untrained branch) would divide by zero. Either way, keep the scale at least SPREAD_FLOOR of the magnitude.
        magnitude = max(abs(float(q_low)), abs(float(q_high)))
        scale_floor = max(1e-12, SPREAD_FLOOR * magnitude)
        self.q_low.fill_(float(q_low))
        self.q_high.fill_(float(max(q_high, q_low + scale_floor)))
        self.fitted.fill_(True)

    def forward(self, anomaly_map: torch.Tensor) -> torch.Tensor:
        """Normalise a raw map with the fitted constants (identity-like before fitting)."""
        return 0.1 * (anomaly_map - self.q_low) / (self.q_high - self.q_low)
