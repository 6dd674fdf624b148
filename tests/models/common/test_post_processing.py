"""The rank-preserving post-processor: anomalib's thresholds and labels, without the clamp's ties."""

import pytest
import torch
from anomalib.data import InferenceBatch
from anomalib.post_processing import PostProcessor
from torchmetrics.functional.classification import binary_auroc

from anomalib_npgmf.models.common import RankPreservingPostProcessor
from anomalib_npgmf.models.common.post_processing import TAIL_BAND, squash_to_unit


def _fitted(processor: PostProcessor, sensitivity: float = 0.5) -> PostProcessor:
    """Statistics as on MVTec LOCO's validation set: normal images only, the threshold at the normal maximum."""
    processor.image_min.fill_(-1.0)
    processor.image_max.fill_(1.0)
    processor._image_threshold.fill_(1.0)
    processor.pixel_min.fill_(-1.0)
    processor.pixel_max.fill_(1.0)
    processor._pixel_threshold.fill_(1.0)
    processor.image_sensitivity = processor.pixel_sensitivity = sensitivity
    return processor


def test_every_rank_survives_where_anomalib_ties_the_tails():
    raw = torch.linspace(-60.0, 60.0, 4001)
    anomalib = PostProcessor._normalize(raw, torch.tensor(-1.0), torch.tensor(1.0), torch.tensor(1.0))
    ours = RankPreservingPostProcessor._normalize(raw, torch.tensor(-1.0), torch.tensor(1.0), torch.tensor(1.0))
    assert anomalib.unique().numel() < raw.numel() // 2, "anomalib's clamp no longer ties the tails: nothing to fix"
    assert (ours.diff() > 0).all(), "two different raw values got the same or a swapped normalised value"
    assert float(ours.min()) > 0 and float(ours.max()) < 1
    far = 1.0 + torch.logspace(0, 6, 13900, dtype=torch.float64).float()  # 0.1% apart, up to 1e6 ranges out
    assert (far.diff() > 0).all()
    squashed = RankPreservingPostProcessor._normalize(far, torch.tensor(-1.0), torch.tensor(1.0), torch.tensor(1.0))
    assert (squashed.diff() > 0).all(), "float32 tied two tail values 0.1% apart"


def test_the_middle_is_anomalib_s_map_narrowed_by_the_bands():
    raw = torch.linspace(0.01, 1.99, 301)  # anomalib's (0, 1) with threshold 1 and range 2: raw in (0, 2)
    anomalib = PostProcessor._normalize(raw, torch.tensor(-1.0), torch.tensor(1.0), torch.tensor(1.0))
    ours = RankPreservingPostProcessor._normalize(raw, torch.tensor(-1.0), torch.tensor(1.0), torch.tensor(1.0))
    assert anomalib.std() > 0.2
    # a handful of float32 operations on values below 4: rounding stays far below 1e-6
    torch.testing.assert_close(ours, TAIL_BAND + (1 - 2 * TAIL_BAND) * anomalib, rtol=0, atol=1e-6)


def test_the_squash_is_smooth_at_the_joints_and_keeps_the_threshold_at_one_half():
    eps = 1e-7
    for joint in (0.0, 1.0):
        points = torch.tensor([joint - eps, joint, joint + eps], dtype=torch.float64)
        left, middle, right = squash_to_unit(points).tolist()
        # slopes either side of the joint agree to O(eps) (the map is C1), both equal the middle slope 1 - 2 * band
        # float64 differences over eps 1e-7: curvature (< 100) adds < 1e-5 to a slope, rounding < 1e-8
        assert (middle - left) / eps == pytest.approx(1 - 2 * TAIL_BAND, abs=1e-4)
        assert (right - middle) / eps == pytest.approx(1 - 2 * TAIL_BAND, abs=1e-4)
    assert float(squash_to_unit(torch.tensor(0.5))) == 0.5


@pytest.mark.parametrize("sensitivity", [0.0, 0.2, 0.5, 0.8, 1.0])
def test_labels_and_masks_are_anomalib_s_at_every_sensitivity(sensitivity):
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(400, generator=generator) * 3
    maps = torch.randn(4, 1, 16, 16, generator=generator) * 3
    anomalib = _fitted(PostProcessor(), sensitivity)(InferenceBatch(pred_score=scores, anomaly_map=maps))
    ours = _fitted(RankPreservingPostProcessor(), sensitivity)(InferenceBatch(pred_score=scores, anomaly_map=maps))
    if sensitivity > 0:  # at 0 anomalib's threshold is its clamped maximum: it flags nothing, and neither may we
        assert 0 < anomalib.pred_label.float().mean() < 1, "all labels equal: the comparison would prove nothing"
    assert torch.equal(ours.pred_label, anomalib.pred_label)
    assert torch.equal(ours.pred_mask, anomalib.pred_mask)


def test_pixel_auroc_of_the_normalised_maps_is_that_of_the_raw_maps():
    """The failure it fixes: defects and their halo (normal pixels of anomalous images) both lie beyond the normal
    maximum; anomalib's clamp ties them at 1 and its pixel AUROC drops toward 0.5 for that part."""
    generator = torch.Generator().manual_seed(0)
    normal = torch.randn(20000, generator=generator) * 0.3
    halo = 2 + 4 * torch.rand(2000, generator=generator)
    defect = 4 + 6 * torch.rand(2000, generator=generator)
    raw = torch.cat([normal, halo, defect])
    target = torch.cat([torch.zeros(22000), torch.ones(2000)]).long()
    stats = torch.tensor(-1.0), torch.tensor(1.0), torch.tensor(1.0)
    raw_auroc = float(binary_auroc(raw, target))
    ours = float(binary_auroc(RankPreservingPostProcessor._normalize(raw, *stats), target))
    anomalib = float(binary_auroc(PostProcessor._normalize(raw, *stats), target))
    assert ours == pytest.approx(raw_auroc, abs=1e-6)  # same ranks; torchmetrics sums in float32
    assert anomalib < raw_auroc - 0.02


def test_unfitted_statistics_leave_values_raw_and_a_zero_range_splits_at_the_threshold():
    raw = torch.tensor([-3.0, 0.0, 2.0, 7.0])
    nan = torch.tensor(float("nan"))
    assert torch.equal(RankPreservingPostProcessor._normalize(raw, nan, nan, nan), raw)
    flat = RankPreservingPostProcessor._normalize(raw, torch.tensor(2.0), torch.tensor(2.0), torch.tensor(2.0))
    assert flat.tolist() == pytest.approx([TAIL_BAND, TAIL_BAND, 0.5, 1 - TAIL_BAND])


def test_it_holds_anomalib_s_buffers_so_checkpoints_load_either_way():
    ours = _fitted(RankPreservingPostProcessor())
    anomalib = PostProcessor()
    anomalib.load_state_dict(ours.state_dict())
    assert set(ours.state_dict()) == set(anomalib.state_dict())
    assert float(anomalib.pixel_max) == 1.0


def test_both_models_default_to_it_and_take_anomalib_s_when_asked():
    from anomalib_npgmf import InpFormerPlusPlus, Npgmf

    from ..inp_former_pp.conftest import TINY_MODEL
    from ..npgmf.conftest import TINY_NPGMF

    inp_kwargs = {**TINY_MODEL, "backbone_kwargs": dict(TINY_MODEL["backbone_kwargs"])}
    for model_class, kwargs in ((Npgmf, TINY_NPGMF), (InpFormerPlusPlus, inp_kwargs)):
        assert type(model_class(**kwargs).post_processor) is RankPreservingPostProcessor
        assert type(model_class(**kwargs, post_processor=PostProcessor()).post_processor) is PostProcessor
