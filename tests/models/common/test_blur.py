"""The separable blur equals anomalib's 2-D Gaussian blur and loads checkpoints that hold the 2-D kernel."""

import pytest
import torch
from anomalib.models.components import GaussianBlur2d
from anomalib.models.components.filters.blur import compute_kernel_size

from anomalib_npgmf.models.common import SeparableGaussianBlur


@pytest.mark.parametrize(("sigma", "shape"), [(4.0, (2, 1, 64, 80)), (1.5, (1, 3, 20, 17))])
def test_same_maps_as_anomalibs_2d_blur(sigma, shape):
    maps = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    kernel_size = compute_kernel_size(sigma)
    reference = GaussianBlur2d(sigma=sigma, channels=shape[1], kernel_size=kernel_size)(maps)
    # Worst-case float32 summation error of k*k (2-D) plus 2k (separable) non-negative terms of a convex combination of
    # values in [0, 1]: (k*k + 2k) * 2**-24 (6.9e-5 at k = 33; measured 1.5e-6). A sigma 1 % off moves maps by ~1e-3.
    bound = (kernel_size**2 + 2 * kernel_size) * 2.0**-24
    assert torch.allclose(SeparableGaussianBlur(sigma)(maps), reference, rtol=0.0, atol=bound)


def test_an_old_state_with_the_2d_kernel_loads_and_none_is_saved():
    old = GaussianBlur2d(sigma=4.0, channels=1, kernel_size=33).state_dict()
    blur = SeparableGaussianBlur(4.0)
    assert blur.load_state_dict(old, strict=True) is not None
    assert blur.state_dict() == {}


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="odd kernel_size"):
        SeparableGaussianBlur(2.0, kernel_size=4)
    with pytest.raises(ValueError, match="sigma > 0"):
        SeparableGaussianBlur(0.0)
