import pytest
import torch

from anomalib_npgmf.models.npgmf.components import GroupedVectorQuantizer


def _clustered(batch: int, centres: torch.Tensor, noise: float = 0.01) -> torch.Tensor:
    """(B, C, 2, 2) maps whose cells are drawn from a few fixed centres."""
    picks = torch.randint(len(centres), (batch * 4,))
    cells = centres[picks] + noise * torch.randn(batch * 4, centres.shape[1])
    return cells.reshape(batch, 2, 2, -1).permute(0, 3, 1, 2)


def test_shapes_and_eval_snaps_to_codes():
    quantizer = GroupedVectorQuantizer(dim=8, num_codes=16, num_codebooks=2)
    features = torch.randn(3, 8, 4, 5)
    quantizer.train()
    quantizer(features)
    quantizer.eval()
    quantised, commitment, indices = quantizer(features)
    assert quantised.shape == features.shape
    assert indices.shape == (2, 3, 4, 5)
    assert float(commitment) == 0.0
    # Every quantised cell is exactly one of its group's codes.
    first_group = quantised[:, :4].permute(0, 2, 3, 1).reshape(-1, 4)
    # compared exactly: cdist's matmul form loses ~sqrt(eps) to cancellation, so a distance test needed a loose bound
    is_a_code = (first_group[:, None, :] == quantizer.codes[0][None, :, :]).all(dim=-1)
    assert is_a_code.any(dim=1).all()


def test_straight_through_gradient_reaches_the_input_unchanged():
    quantizer = GroupedVectorQuantizer(dim=4, num_codes=8, num_codebooks=1, beta=0.0)
    quantizer.train()
    features = torch.randn(2, 4, 3, 3, requires_grad=True)
    quantised, _, _ = quantizer(features)
    upstream = torch.randn_like(quantised)
    (quantised * upstream).sum().backward()
    assert torch.equal(features.grad, upstream)  # straight-through: the identity, exactly (beta = 0)


def test_commitment_loss_pulls_features_towards_codes():
    quantizer = GroupedVectorQuantizer(dim=4, num_codes=8, num_codebooks=1, beta=0.25)
    quantizer.train()
    quantizer(torch.randn(2, 4, 3, 3))  # initialise the codes
    features = torch.randn(2, 4, 3, 3, requires_grad=True)
    _, commitment, _ = quantizer(features)
    assert float(commitment) > 0
    commitment.backward()
    assert features.grad.abs().sum() > 0


def test_ema_codes_converge_to_cluster_centres_and_are_used():
    torch.manual_seed(0)
    centres = torch.eye(6) * 3.0
    quantizer = GroupedVectorQuantizer(dim=6, num_codes=12, num_codebooks=1, decay=0.8)
    quantizer.train()
    for _ in range(60):
        quantizer(_clustered(8, centres))
    # each centre has a code within the noise level
    nearest = torch.cdist(centres, quantizer.codes[0]).min(dim=1).values
    assert (nearest < 0.1).all(), nearest
    usage = quantizer.usage()
    assert 0.0 < float(usage[0]) <= 1.0


def test_dead_codes_restart_on_the_worst_fitted_features_within_restart_after_steps():
    quantizer = GroupedVectorQuantizer(dim=2, num_codes=4, num_codebooks=1, restart_after=3, init_max_batches=1)
    quantizer.train()
    quantizer(0.01 * torch.randn(1, 2, 2, 2))  # codes seeded near 0
    far = torch.zeros(1, 2, 2, 2)
    far[0, :, 0, 0] = torch.tensor([10.0, -10.0])
    for _ in range(4):
        quantizer(far)
    distances = torch.cdist(torch.tensor([[10.0, -10.0]]), quantizer.codes[0])
    assert float(distances.min()) < 1.0, "an unused code should have moved onto the far feature"


def _rich_tokens(batch: int, generator: torch.Generator) -> torch.Tensor:
    """(B, 8, 4, 4) maps whose cells come from 64 well-separated centres (more patterns than codes)."""
    centres = torch.randn(64, 8, generator=torch.Generator().manual_seed(1)) * 3.0
    picks = torch.randint(64, (batch * 16,), generator=generator)
    cells = centres[picks] + 0.01 * torch.randn(batch * 16, 8, generator=generator)
    return cells.reshape(batch, 4, 4, 8).permute(0, 3, 1, 2)


@pytest.mark.parametrize("num_codes", [8, 32])
def test_codes_start_distinct_for_every_k(num_codes):
    generator = torch.Generator().manual_seed(0)
    quantizer = GroupedVectorQuantizer(dim=8, num_codes=num_codes, num_codebooks=1)
    quantizer.train()
    while not bool(quantizer.initialised):
        quantizer(_rich_tokens(2, generator))
    codes = quantizer.codes[0]
    pairwise = torch.cdist(codes, codes) + torch.eye(num_codes) * 1e9
    # seeded from the first batch alone, K codes were copies of the first batch's ~32 features: here all K differ
    # by at least the centres' spacing (noise 0.01, centres ~3 apart)
    assert float(pairwise.min()) > 0.5, f"duplicate codes among K={num_codes}"


def test_features_pass_through_until_enough_were_seen():
    quantizer = GroupedVectorQuantizer(dim=8, num_codes=32, num_codebooks=1, init_max_batches=3)
    quantizer.train()
    generator = torch.Generator().manual_seed(0)
    first = _rich_tokens(1, generator)  # 16 features < 2 K = 64
    quantised, commitment, _ = quantizer(first)
    assert torch.equal(quantised, first) and float(commitment) == 0.0 and not bool(quantizer.initialised)
    quantizer(_rich_tokens(1, generator))
    quantizer(_rich_tokens(1, generator))  # the third batch reaches init_max_batches
    assert bool(quantizer.initialised)


def test_a_blanked_part_is_snapped_back_to_its_normal_code():
    """An abnormal bottleneck cell (a part blanked in feature space) is decoded from the nearest normal code: the
    decoder's input is then closer to the normal cell than without the codebook (what lets M_LAD repair it)."""
    generator = torch.Generator().manual_seed(0)
    content = torch.randn(4, 8, generator=generator)  # one part per cell, |content| ~ 2.8
    position = torch.randn(4, 8, generator=generator) * 4.0  # the position embedding added before quantisation
    normal_cells = content + position

    def normal_batch(batch: int) -> torch.Tensor:
        cells = normal_cells.repeat(batch, 1) + 0.01 * torch.randn(batch * 4, 8, generator=generator)
        return cells.reshape(batch, 2, 2, 8).permute(0, 3, 1, 2)

    quantizer = GroupedVectorQuantizer(dim=8, num_codes=16, num_codebooks=1)
    quantizer.train()
    for _ in range(40):
        quantizer(normal_batch(8))
    quantizer.eval()
    anomalous = normal_batch(1)
    anomalous[0, :, 0, 0] = position[0]  # part of cell 0 missing: only its position is left
    quantised, _, _ = quantizer(anomalous)
    without_codebook = float((anomalous[0, :, 0, 0] - normal_cells[0]).norm())
    with_codebook = float((quantised[0, :, 0, 0] - normal_cells[0]).norm())
    assert without_codebook > 1.0  # the blanked cell really is abnormal
    assert with_codebook < 0.1 * without_codebook, (with_codebook, without_codebook)
