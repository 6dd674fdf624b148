"""Vector-quantised codebooks of normal features (the "normality prior" memory).

Each bottleneck cell is snapped to its nearest learned code, so an abnormal arrangement reaches the decoder as the
nearest *normal* pattern and is reconstructed as normal; the encoder-decoder disagreement then marks it.
The channels are split into ``num_codebooks`` groups, each with its own codebook ("multi-semantic": K^G
combinations at the cost of G*K codes).

Training is VQ-VAE style: straight-through gradients, commitment loss (beta = 0.25) and exponential-moving-average
code updates. EMA sums and counts are all-reduced over DDP ranks, and dead codes are restarted at the worst-fitted
features of the *global* batch (chosen by distance, not at random), so N ranks give the same codebook as one process.
"""

import torch
from torch import distributed as dist
from torch import nn
from torch.nn import functional as F  # noqa: N812

from anomalib_npgmf.models.common.distributed import all_reduce_sum, is_distributed


class GroupedVectorQuantizer(nn.Module):
    """Product of ``num_codebooks`` EMA vector quantisers over channel groups.

    Args:
        dim: Channels of the input map; must be divisible by ``num_codebooks``.
        num_codes: Entries per codebook (K).
        num_codebooks: Channel groups, each with its own codebook (G).
        beta: Commitment-loss weight.
        decay: EMA decay of code statistics.
        dead_code_threshold: A code whose EMA usage falls below this is restarted.
    """

    def __init__(
        self,
        dim: int,
        num_codes: int = 256,
        num_codebooks: int = 2,
        beta: float = 0.25,
        decay: float = 0.99,
        dead_code_threshold: float = 1e-3,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if num_codes < 2 or num_codebooks < 1 or dim % num_codebooks:
            msg = (
                f"codebook needs num_codes >= 2 and a channel count divisible by num_codebooks; got dim={dim}, "
                f"num_codes={num_codes}, num_codebooks={num_codebooks}"
            )
            raise ValueError(msg)
        self.dim = dim
        self.num_codes = num_codes
        self.num_codebooks = num_codebooks
        self.group_dim = dim // num_codebooks
        self.beta = beta
        self.decay = decay
        self.dead_code_threshold = dead_code_threshold
        self.eps = eps
        codes = torch.randn(num_codebooks, num_codes, self.group_dim) / self.group_dim**0.5
        self.register_buffer("codes", codes)
        self.register_buffer("ema_count", torch.ones(num_codebooks, num_codes))
        self.register_buffer("ema_sum", codes.clone())
        self.register_buffer("initialised", torch.tensor(False))

    def _tokens(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (G, B*H*W, C/G)."""
        batch, _, height, width = features.shape
        tokens = features.permute(0, 2, 3, 1).reshape(batch * height * width, self.num_codebooks, self.group_dim)
        return tokens.permute(1, 0, 2)

    def _distances(self, tokens: torch.Tensor) -> torch.Tensor:
        """Squared L2 distances (G, N, K) between tokens and codes."""
        return (
            tokens.pow(2).sum(-1, keepdim=True)
            - 2 * torch.bmm(tokens, self.codes.transpose(1, 2))
            + self.codes.pow(2).sum(-1).unsqueeze(1)
        )

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantise ``features``.

        Returns:
            ``(quantised, commitment_loss, indices)``: the quantised map with straight-through gradient (same shape
            as ``features``), the commitment loss (0 in eval), and code indices (G, B, H, W).
        """
        batch, channels, height, width = features.shape
        tokens = self._tokens(features)
        if self.training:
            self._initialise_from(tokens.detach())
        distances = self._distances(tokens)
        indices = distances.argmin(dim=-1)  # (G, N)
        quantised_tokens = torch.gather(
            self.codes, 1, indices.unsqueeze(-1).expand(-1, -1, self.group_dim)
        )  # (G, N, D/G)
        if self.training:
            self._ema_update(tokens.detach(), indices, distances.detach())
            commitment = self.beta * F.mse_loss(tokens, quantised_tokens.detach())
            quantised_tokens = tokens + (quantised_tokens - tokens).detach()
        else:
            commitment = features.new_zeros(())
        quantised = quantised_tokens.permute(1, 0, 2).reshape(batch, height, width, channels).permute(0, 3, 1, 2)
        return quantised, commitment, indices.reshape(self.num_codebooks, batch, height, width)

    @torch.no_grad()
    def _initialise_from(self, tokens: torch.Tensor) -> None:
        """First batch: spread the codes over the first features seen (same on every rank)."""
        if bool(self.initialised):
            return
        candidates = _gather_tokens(tokens)
        count = candidates.shape[1]
        picks = torch.arange(self.num_codes) % count
        self.codes.copy_(candidates[:, picks])
        self.ema_sum.copy_(self.codes)
        self.ema_count.fill_(1.0)
        self.initialised.fill_(True)

    @torch.no_grad()
    def _ema_update(self, tokens: torch.Tensor, indices: torch.Tensor, distances: torch.Tensor) -> None:
        one_hot = F.one_hot(indices, self.num_codes).type(tokens.dtype)  # (G, N, K)
        counts = all_reduce_sum(one_hot.sum(dim=1))
        sums = all_reduce_sum(torch.bmm(one_hot.transpose(1, 2), tokens))
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.ema_count.sum(dim=1, keepdim=True)
        smoothed = (self.ema_count + self.eps) / (total + self.num_codes * self.eps) * total
        self.codes.copy_(self.ema_sum / smoothed.unsqueeze(-1))
        self._restart_dead_codes(tokens, distances.min(dim=-1).values)

    @torch.no_grad()
    def _restart_dead_codes(self, tokens: torch.Tensor, nearest_distance: torch.Tensor) -> None:
        """Move unused codes onto the features the codebook fits worst (deterministic, rank-count independent)."""
        for group in range(self.num_codebooks):
            dead = (self.ema_count[group] < self.dead_code_threshold).nonzero().flatten()
            if dead.numel() == 0:
                continue
            worst = _global_worst_tokens(tokens[group], nearest_distance[group], dead.numel())
            dead = dead[: worst.shape[0]]
            self.codes[group, dead] = worst
            self.ema_sum[group, dead] = worst
            self.ema_count[group, dead] = 1.0

    @torch.no_grad()
    def usage(self) -> torch.Tensor:
        """Fraction of codes per codebook whose EMA usage is above the dead-code threshold."""
        return (self.ema_count > self.dead_code_threshold).float().mean(dim=1)


def _gather_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """Concatenate (G, N, D) tokens of all ranks along N in a rank-count independent order (sorted by content)."""
    if is_distributed():
        parts: list[torch.Tensor] = [None] * dist.get_world_size()  # type: ignore[list-item]
        dist.all_gather_object(parts, tokens.cpu())
        tokens = torch.cat([part.to(tokens.device) for part in parts], dim=1)
    order = torch.argsort(tokens[0, :, 0] * 1e3 + tokens[0].sum(-1), stable=True)
    return tokens[:, order]


def _global_worst_tokens(tokens: torch.Tensor, distance: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` tokens (over all ranks) farthest from their nearest code."""
    local = torch.topk(distance, min(count, distance.numel())).indices
    candidates, candidate_distance = tokens[local], distance[local]
    if is_distributed():
        gathered: list[tuple[torch.Tensor, torch.Tensor]] = [None] * dist.get_world_size()  # type: ignore[list-item]
        dist.all_gather_object(gathered, (candidates.cpu(), candidate_distance.cpu()))
        candidates = torch.cat([c for c, _ in gathered]).to(tokens.device)
        candidate_distance = torch.cat([d for _, d in gathered]).to(tokens.device)
    best = torch.topk(candidate_distance, min(count, candidate_distance.numel())).indices
    return candidates[best]
