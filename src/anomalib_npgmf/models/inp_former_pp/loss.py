"""Losses of INP-Former / INP-Former++.

- Soft mining loss (official ``global_cosine_hm_adaptive``): value = mean over groups and images of
  ``1 - cos(vec(E_b), vec(D_b))`` (one cosine over the whole flattened feature map of image b); its gradient with
  respect to D is multiplied per token by ``(d / mean d) ** p`` where d is the token's own cosine distance. Hard tokens
  get more gradient, easy ones less, without changing the loss value. The mean is over all tokens of the *global*
  batch (summed over DDP ranks), so 1 rank and N ranks weight the same tokens the same way.
- INP coherence loss: mean over tokens of the cosine distance to the nearest INP.
- Soft INP coherence loss (INP-Former++; our form, see README): the same distances, averaged with detached weights
  ``softmax_i(-(d_i / mean d) / tau)`` per image, so tokens far from every INP (rare or anomalous ones) pull the INPs
  less. ``tau -> inf`` gives the hard loss back.
- Residual loss (INP-Former++ residual learning, our form): class-balanced binary cross-entropy of the residual head
  against the pseudo-anomaly mask.
"""

import torch
import torch.nn.functional as F  # noqa: N812
from torch import distributed as dist
from torch import nn

from anomalib_npgmf.utils.distributed import all_reduce_sum, is_distributed


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by fixed weights."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, tensor: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(weights)
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        (weights,) = ctx.saved_tensors
        return grad_output * weights, None


def scale_gradient(tensor: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``tensor`` unchanged, with its gradient multiplied by ``weights`` (broadcast) in the backward pass."""
    return _ScaleGradient.apply(tensor, weights)


def global_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over all DDP ranks (their local mean on one process)."""
    totals = torch.stack([values.detach().sum(), torch.tensor(float(values.numel()), device=values.device)]).double()
    totals = all_reduce_sum(totals)
    return (totals[0] / totals[1]).to(values.dtype)


def soft_mining_loss(
    encoder_groups: list[torch.Tensor],
    decoder_groups: list[torch.Tensor],
    power: float = 3.0,
) -> torch.Tensor:
    """Global cosine loss with per-token gradient re-weighting (``(d / mean d) ** power``).

    Args:
        encoder_groups: Encoder feature maps ``(B, C, h, w)`` per group (targets; detached here).
        decoder_groups: Matching decoder maps (receive the re-weighted gradient).
        power: Re-weighting exponent (official: 3); ``0`` gives plain global cosine gradients.
    """
    total = encoder_groups[0].new_zeros(())
    for encoder, decoder in zip(encoder_groups, decoder_groups, strict=True):
        encoder = encoder.detach()
        with torch.no_grad():
            distance = 1.0 - F.cosine_similarity(encoder, decoder, dim=1).unsqueeze(1)
            weights = (distance / global_mean(distance)) ** power
        decoder = scale_gradient(decoder, weights)
        cosine = F.cosine_similarity(encoder.flatten(1), decoder.flatten(1), dim=1)
        total = total + (1.0 - cosine).mean()
    return total / len(encoder_groups)


def nearest_inp_distance(tokens: torch.Tensor, inps: torch.Tensor) -> torch.Tensor:
    """Cosine distance of each token ``(B, N, C)`` to its nearest INP ``(B, M, C)`` -> ``(B, N)``."""
    similarity = F.normalize(tokens, dim=-1) @ F.normalize(inps, dim=-1).transpose(1, 2)
    return 1.0 - similarity.max(dim=-1).values


def coherence_loss(tokens: torch.Tensor, inps: torch.Tensor) -> torch.Tensor:
    """INP coherence loss: mean over tokens of the distance to the nearest INP."""
    return nearest_inp_distance(tokens, inps).mean()


def soft_coherence_loss(tokens: torch.Tensor, inps: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Soft coherence loss: per-image weighted mean of nearest-INP distances, weights ``softmax(-d / (tau mean d))``.

    Weights are detached and sum to 1 per image; the result is averaged over images.
    """
    distance = nearest_inp_distance(tokens, inps)
    with torch.no_grad():
        relative = distance / distance.mean(dim=1, keepdim=True).clamp_min(1e-12)
        weights = torch.softmax(-relative / temperature, dim=1)
    return (weights * distance).sum(dim=1).mean()


def balanced_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of the BCE over anomalous tokens and the BCE over normal tokens (each class counts half).

    Under DDP the class means are over the *global* batch: each rank divides its class sums by the global class
    counts and multiplies by the world size, which DDP's gradient averaging divides out again. So N ranks take the
    same step as one process with the whole batch (a per-rank mean would weight tokens by their rank's class counts).
    """
    per_token = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    positive = target > 0.5
    masks = (positive, ~positive)
    local_counts = [float(mask.sum()) for mask in masks]
    counts = all_reduce_sum(torch.tensor(local_counts, dtype=torch.float64, device=logits.device)).tolist()
    world = float(dist.get_world_size()) if is_distributed() else 1.0
    terms = [per_token[mask].sum() * (world / count) for mask, count in zip(masks, counts, strict=True) if count]
    return torch.stack(terms).mean()


class InpFormerLoss(nn.Module):
    """Total training loss: soft mining + ``coherence_weight`` x (soft) coherence + ``residual_weight`` x residual.

    Args:
        coherence_weight: Weight of the coherence term (official: 0.2).
        mining_power: Soft-mining exponent (official: 3).
        soft_coherence: Use the soft coherence loss (INP-Former++) instead of the hard one.
        coherence_temperature: Temperature of the soft coherence weights.
        residual_loss_weight: Weight of the residual head's loss (only used when the batch output has it).
    """

    def __init__(
        self,
        coherence_weight: float = 0.2,
        mining_power: float = 3.0,
        soft_coherence: bool = True,
        coherence_temperature: float = 1.0,
        residual_loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if not coherence_temperature > 0:
            msg = f"coherence_temperature must be > 0, got {coherence_temperature}"
            raise ValueError(msg)
        self.coherence_weight = coherence_weight
        self.mining_power = mining_power
        self.soft_coherence = soft_coherence
        self.coherence_temperature = coherence_temperature
        self.residual_loss_weight = residual_loss_weight

    def forward(self, outputs: dict[str, torch.Tensor | list[torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Loss terms and their weighted sum ``loss`` from the training outputs of the torch model."""
        reconstruction = soft_mining_loss(outputs["encoder_groups"], outputs["decoder_groups"], self.mining_power)
        if self.soft_coherence:
            coherence = soft_coherence_loss(outputs["fused_tokens"], outputs["inps"], self.coherence_temperature)
        else:
            coherence = coherence_loss(outputs["fused_tokens"], outputs["inps"])
        losses = {"reconstruction": reconstruction, "coherence": coherence}
        total = reconstruction + self.coherence_weight * coherence
        if outputs.get("residual_logits") is not None:
            losses["residual"] = balanced_bce(outputs["residual_logits"], outputs["residual_target"])
            total = total + self.residual_loss_weight * losses["residual"]
        losses["loss"] = total
        return losses
