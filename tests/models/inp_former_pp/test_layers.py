"""INP extractor and INP-guided decoder block against hand-written references of the paper's equations."""

import torch

from anomalib_npgmf.models.inp_former_pp.components.layers import InpExtractor, InpGuidedBlock, init_trainable


def _heads(tensor: torch.Tensor, heads: int) -> torch.Tensor:
    batch, length, dim = tensor.shape
    return tensor.reshape(batch, length, heads, dim // heads).permute(0, 2, 1, 3)


def test_extractor_is_cross_attention_of_learned_queries_plus_ffn():
    torch.manual_seed(0)
    extractor = InpExtractor(dim=8, num_heads=2, num_inps=3)
    features = torch.randn(2, 5, 8)
    with torch.no_grad():
        inps = extractor(features)
        queries = extractor.queries.expand(2, -1, -1)
        q = _heads(extractor.q(extractor.norm1(queries)), 2)
        kv = extractor.kv(extractor.norm1(features))
        k, v = _heads(kv[..., :8], 2), _heads(kv[..., 8:], 2)
        weights = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1)  # head_dim 4 -> scale 1/2
        mixed = (weights @ v).permute(0, 2, 1, 3).reshape(2, 3, 8)
        tokens = queries + extractor.proj(mixed)
        expected = tokens + extractor.mlp(extractor.norm2(tokens))
    assert inps.shape == (2, 3, 8)
    # atol=1e-6 in this file: the same float32 layer written out (dim 8, values ~1): a few ulps (1.2e-7 each)
    assert torch.allclose(inps, expected, atol=1e-6)


def test_decoder_block_uses_l2_normalised_relu_attention_without_first_residual():
    torch.manual_seed(0)
    block = InpGuidedBlock(dim=8, num_heads=2)
    block.learn_scale.data = torch.tensor([2.0, 0.5]).view(2, 1, 1)
    tokens, inps = torch.randn(2, 5, 8), torch.randn(2, 3, 8)
    with torch.no_grad():
        out = block(tokens, inps)
        q = _heads(block.q(block.norm1(tokens)), 2)
        kv = block.kv(block.norm1(inps))
        k, v = _heads(kv[..., :8], 2), _heads(kv[..., 8:], 2)
        q = q / q.norm(dim=-1, keepdim=True)
        k = k / k.norm(dim=-1, keepdim=True)
        weights = torch.clamp((q @ k.transpose(-1, -2)) * torch.tensor([2.0, 0.5]).view(1, 2, 1, 1), min=0)
        attended = block.proj((weights @ v).permute(0, 2, 1, 3).reshape(2, 5, 8))
        expected = attended + block.mlp(block.norm2(attended))
    assert torch.allclose(out, expected, atol=1e-6)
    # No residual around the attention: the output is a function of the INPs' values, so zero values -> MLP of bias.
    with torch.no_grad():
        block.kv.weight[8:].zero_()
        block.kv.bias[8:].zero_()
        block.proj.bias.zero_()
        silent = block(tokens, inps)
    assert torch.allclose(silent, silent[:, :1].expand_as(silent), atol=1e-6)


def test_official_initialisation():
    torch.manual_seed(0)
    block = InpGuidedBlock(dim=16, num_heads=2)
    init_trainable(block)
    assert block.q.weight.abs().max() <= 0.03
    assert 0.005 < float(block.q.weight.std()) < 0.012
    assert float(block.q.bias.abs().max()) == 0.0
    assert torch.equal(block.norm1.weight, torch.ones(16))
    assert torch.equal(block.learn_scale, torch.ones(2, 1, 1))
