"""INP extractor and INP-guided decoder blocks (INP-Former, CVPR 2025, section 3).

Layer shapes follow the official implementation (``q``, ``kv``, ``proj``, ``mlp.fc1/fc2``, ``learn_scale``, all with
biases; anomalib's port drops the MLP biases), so a released checkpoint's tensors have a place here.
"""

from functools import partial

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.nn.init import trunc_normal_

LayerNorm = partial(nn.LayerNorm, eps=1e-8)


class FeedForward(nn.Module):
    """Linear -> GELU -> Linear (the transformer MLP; also the bottleneck)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Apply the MLP token-wise."""
        return self.fc2(self.act(self.fc1(tokens)))


def _split_heads(tokens: torch.Tensor, num_heads: int) -> torch.Tensor:
    batch, length, channels = tokens.shape
    return tokens.reshape(batch, length, num_heads, channels // num_heads).transpose(1, 2)


def _merge_heads(tokens: torch.Tensor) -> torch.Tensor:
    batch, heads, length, head_dim = tokens.shape
    return tokens.transpose(1, 2).reshape(batch, length, heads * head_dim)


class InpExtractor(nn.Module):
    """M learnable queries cross-attend to the image's patch tokens: the INPs are linear mixes of those tokens.

    ``T' = T + Attn(LN(T), LN(F))``, ``P = T' + FFN(LN(T'))`` with one LayerNorm shared by queries and keys, as in
    the official code.
    """

    def __init__(self, dim: int, num_heads: int, num_inps: int = 6, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if dim % num_heads:
            msg = f"embedding dim {dim} is not divisible by the number of heads {num_heads}"
            raise ValueError(msg)
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.queries = nn.Parameter(torch.randn(num_inps, dim))
        self.norm1 = LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = LayerNorm(dim)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """INPs ``(B, M, C)`` of patch tokens ``features`` ``(B, N, C)``."""
        queries = self.queries.unsqueeze(0).expand(features.shape[0], -1, -1)
        q = _split_heads(self.q(self.norm1(queries)), self.num_heads)
        key, value = self.kv(self.norm1(features)).chunk(2, dim=-1)
        k, v = _split_heads(key, self.num_heads), _split_heads(value, self.num_heads)
        attention = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        tokens = queries + self.proj(_merge_heads(attention @ v))
        return tokens + self.mlp(self.norm2(tokens))


class InpGuidedBlock(nn.Module):
    """Decoder block: queries are the tokens, keys/values the INPs; output lies in the span of the INPs.

    Query and key are L2-normalised per head, scaled by a learned per-head temperature, and passed through ReLU
    instead of softmax. The residual around the attention is removed on purpose (it would carry anomalous tokens
    straight into the reconstruction); the MLP keeps its residual.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if dim % num_heads:
            msg = f"embedding dim {dim} is not divisible by the number of heads {num_heads}"
            raise ValueError(msg)
        self.num_heads = num_heads
        self.norm1 = LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.learn_scale = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.proj = nn.Linear(dim, dim)
        self.norm2 = LayerNorm(dim)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))

    def forward(self, tokens: torch.Tensor, inps: torch.Tensor) -> torch.Tensor:
        """Reconstruct ``tokens`` ``(B, N, C)`` from ``inps`` ``(B, M, C)``."""
        q = F.normalize(_split_heads(self.q(self.norm1(tokens)), self.num_heads), dim=-1)
        key, value = self.kv(self.norm1(inps)).chunk(2, dim=-1)
        k = F.normalize(_split_heads(key, self.num_heads), dim=-1)
        v = _split_heads(value, self.num_heads)
        attention = F.relu((q @ k.transpose(-2, -1)) * self.learn_scale)
        tokens = self.proj(_merge_heads(attention @ v))
        return tokens + self.mlp(self.norm2(tokens))


def init_trainable(module: nn.Module) -> None:
    """Official initialisation: Linear weights ~ truncated N(0, 0.01) in [-0.03, 0.03], zero biases, unit LayerNorms."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            trunc_normal_(layer.weight, std=0.01, a=-0.03, b=0.03)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.LayerNorm):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)
