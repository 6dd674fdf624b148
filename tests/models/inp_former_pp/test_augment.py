"""Few-shot augmentation: each of the official versions does what it says."""

import torch

from anomalib_npgmf.models.inp_former_pp.components.augment import (
    GREY_VERSION,
    VERSIONS,
    apply_versions,
    few_shot_augment,
)


def test_there_are_the_22_official_versions():
    assert len(VERSIONS) == 22


def test_identity_flip_grey_and_quarter_turns_are_exact():
    torch.manual_seed(0)
    image = torch.randn(1, 3, 8, 8)
    # identity/flip through float32 affine resampling of values in [0, 1]: exact in real arithmetic, ~ulps here
    assert torch.allclose(apply_versions(image, torch.tensor([0])), image, atol=1e-6)
    assert torch.allclose(apply_versions(image, torch.tensor([17])), image.flip(-1), atol=1e-6)
    grey = 0.299 * image[:, 0] + 0.587 * image[:, 1] + 0.114 * image[:, 2]
    assert torch.allclose(apply_versions(image, torch.tensor([GREY_VERSION])), grey.unsqueeze(1).expand(1, 3, 8, 8))
    quarter = apply_versions(image, torch.tensor([19]))
    # quarter turns via float32 cos/sin (cos(pi/2) = -4e-8): sampling points off by ~1e-7 x size -> ~1e-6 errors
    assert any(torch.allclose(quarter, image.rot90(k, dims=(-2, -1)), atol=1e-5) for k in (1, 3))
    assert torch.allclose(apply_versions(image, torch.tensor([20])), image.rot90(2, dims=(-2, -1)), atol=1e-5)


def test_random_versions_keep_shape_and_are_seeded():
    images = torch.randn(4, 3, 16, 16)
    first = few_shot_augment(images, generator=torch.Generator().manual_seed(3))
    second = few_shot_augment(images, generator=torch.Generator().manual_seed(3))
    assert first.shape == images.shape and torch.equal(first, second)
