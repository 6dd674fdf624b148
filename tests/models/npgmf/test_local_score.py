"""How the local maps' maximum enters the image score (issue 18): ``calibrated_local_score`` puts it on the normal
images' per-image maxima, weighted by the local parts' shares; ``local_score_weight`` scales it against the image-level
priors. The map is unchanged either way."""

import numpy as np
import pytest
import torch

from anomalib_npgmf import Npgmf

from .conftest import IMAGE_SIZE, TINY_NPGMF, fitted_tiny_npgmf, tiny_normal_batch


def test_the_map_is_the_same_and_the_score_is_the_calibrated_maximum_plus_the_image_level_parts():
    images = torch.rand((3, 3, IMAGE_SIZE, IMAGE_SIZE), generator=torch.Generator().manual_seed(2))
    plain, calibrated = fitted_tiny_npgmf(), fitted_tiny_npgmf(calibrated_local_score=True)
    net = calibrated.model
    with torch.no_grad():
        plain_output, output = plain.model(images), net(images)
        maximum = output.anomaly_map.amax(dim=(-3, -2, -1))
        share = sum(net.fusion_weights[part] for part in ("logical", "structural", "patch"))
        global_part = net.fuse({"global": net.unsmoothed_maps(images)["global"][:, 0, 0, 0]})
    torch.testing.assert_close(output.anomaly_map, plain_output.anomaly_map, rtol=0, atol=0)
    assert output.pred_score.std() > 0  # a spread, so the comparisons below can fail
    norm = net.local_score_norm
    expected = share * 0.1 * (maximum - norm.q_low) / (norm.q_high - norm.q_low)
    torch.testing.assert_close(output.pred_score, expected + global_part, rtol=0, atol=1e-6)  # float32 op order
    assert not torch.allclose(output.pred_score, plain_output.pred_score)


def test_it_is_fitted_on_the_normal_images_maxima():
    """Its constants are the quantiles of the calibration images' fused-map maxima (the maps the model outputs,
    up to the blur-after-fusion rounding)."""
    calibrated = fitted_tiny_npgmf(calibrated_local_score=True)
    with torch.no_grad():
        images = calibrated.pre_processor.transform(tiny_normal_batch().image)  # as the fit reads them
        maxima = calibrated.model(images).anomaly_map.amax(dim=(-3, -2, -1)).double().numpy()
    assert maxima.std() > 0  # distinct maxima, so the quantiles are not a single value
    low, high = np.quantile(maxima, [0.9, 0.995])
    norm = calibrated.model.local_score_norm
    assert bool(norm.fitted)
    # rtol: float32 rounding of blur-then-fuse (the fit) against fuse-then-blur (the output), ~1e-6 relative
    np.testing.assert_allclose([float(norm.q_low), float(norm.q_high)], [low, high], rtol=1e-5)


def test_off_by_default_and_old_checkpoints_load():
    plain = fitted_tiny_npgmf()
    assert plain.model.local_score_norm is None
    assert not any("local_score_norm" in key for key in plain.state_dict())


def test_the_local_weight_scales_the_maximum_only():
    images = torch.rand((3, 3, IMAGE_SIZE, IMAGE_SIZE), generator=torch.Generator().manual_seed(2))
    plain, weighted = fitted_tiny_npgmf(), fitted_tiny_npgmf(local_score_weight=0.25)
    net = weighted.model
    with torch.no_grad():
        plain_output, output = plain.model(images), net(images)
        global_part = net.fuse({"global": net.unsmoothed_maps(images)["global"][:, 0, 0, 0]})
    torch.testing.assert_close(output.anomaly_map, plain_output.anomaly_map, rtol=0, atol=0)
    assert global_part.std() > 0 and output.pred_score.std() > 0  # spreads, so the comparison can fail
    expected = 0.25 * (plain_output.pred_score - global_part) + global_part
    # float32 in another order: a few units in the last place of the score's magnitude
    torch.testing.assert_close(output.pred_score, expected, rtol=8 * 2.0**-23, atol=0)


@pytest.mark.parametrize("weight", [0.0, -1.0])
def test_a_local_weight_that_is_not_positive_is_named(weight):
    with pytest.raises(ValueError, match="local_score_weight must be > 0"):
        Npgmf(**{**TINY_NPGMF, "local_score_weight": weight})
