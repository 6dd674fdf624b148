"""Separable Gaussian blur for anomaly maps.

anomalib's ``GaussianBlur2d`` convolves with the full k x k kernel (33 x 33 at sigma 4). A Gaussian is separable, so
a row pass then a column pass gives the same map to float rounding with 2k instead of k^2 multiply-adds per pixel.
Measured on the 2-core CPU at 256 px: the 2-D blurs were 41 % of Npgmf's OpenVINO latency (20.6 of 49.7 ms);
separable, the OpenVINO FP32 latency fell from 49 to 30 ms and torch eager from 62 to 47 ms
(``benchmarks/speed/RESULTS.md``).
"""

from typing import Any

from anomalib.models.components.filters.blur import compute_kernel_size
from kornia.filters import get_gaussian_kernel1d
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812


class SeparableGaussianBlur(nn.Module):
    """Gaussian blur with reflect padding ("same" size), as anomalib's ``GaussianBlur2d``, computed separably.

    Args:
        sigma: Standard deviation in pixels.
        kernel_size: Odd kernel side; anomalib's rule from ``sigma`` when ``None``.
    """

    def __init__(self, sigma: float, kernel_size: int | None = None) -> None:
        super().__init__()
        size = compute_kernel_size(sigma) if kernel_size is None else int(kernel_size)
        if sigma <= 0 or size < 1 or size % 2 == 0:
            msg = f"blur needs sigma > 0 and an odd kernel_size >= 1, got sigma={sigma}, kernel_size={size}"
            raise ValueError(msg)
        self.sigma = float(sigma)
        weights = get_gaussian_kernel1d(size, sigma)  # normalised; the 1-D factor of anomalib's (kornia's) 2-D kernel
        # Derived from sigma, so not saved: checkpoints stay independent of how the blur is computed.
        self.register_buffer("row", weights.view(1, 1, 1, size), persistent=False)
        self.register_buffer("column", weights.view(1, 1, size, 1), persistent=False)
        self.half = size // 2

    def forward(self, maps: Tensor) -> Tensor:
        """Blur (B, C, H, W) maps channel by channel; H and W must exceed half the kernel (reflect padding)."""
        batch, channels, height, width = maps.shape
        flat = maps.reshape(batch * channels, 1, height, width)
        padded = F.pad(flat, (self.half, self.half, self.half, self.half), mode="reflect")
        blurred = F.conv2d(F.conv2d(padded, self.row), self.column)
        return blurred.reshape(batch, channels, height, width)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # Checkpoints written before this class held anomalib's 2-D kernel under ``<prefix>kernel``: not needed.
        state_dict.pop(f"{prefix}kernel", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
