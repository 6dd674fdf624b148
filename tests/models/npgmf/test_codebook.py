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


def test_dead_codes_restart_on_the_worst_fitted_features():
    quantizer = GroupedVectorQuantizer(dim=2, num_codes=4, num_codebooks=1, decay=0.5, dead_code_threshold=0.3)
    quantizer.train()
    quantizer(torch.zeros(1, 2, 2, 2))  # every code initialised at 0
    far = torch.zeros(1, 2, 2, 2)
    far[0, :, 0, 0] = torch.tensor([10.0, -10.0])
    for _ in range(5):
        quantizer(far)
    distances = torch.cdist(torch.tensor([[10.0, -10.0]]), quantizer.codes[0])
    assert float(distances.min()) < 1.0, "the unused codes should have moved onto the far feature"
