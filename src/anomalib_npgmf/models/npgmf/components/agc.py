"""AGC: the category name as a prior, through a frozen CLIP text tower (run once at set-up, never exported).

[paper] category name -> frozen CLIP text encoder -> learnable FC -> bilinearly upsampled to each decoder stage.
[ours] prompt ``"a photo of a {name}"`` with underscores as spaces; the FC outputs a small ``grid x grid`` map per
channel so the prior can say *where* things normally are, then it is upsampled to every stage. The text embedding is a
buffer of the model: checkpoints and exported graphs carry it, and inference needs no CLIP at all.
"""

from functools import cache
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from anomalib_npgmf.models.common import resolve_weights_file

DEFAULT_PROMPT = "a photo of a {}"


def clip_text_dim(clip_model: str) -> int:
    """Width of the joint text/image embedding of an open_clip architecture, without building it."""
    import open_clip

    config = open_clip.get_model_config(clip_model)
    if config is None:
        msg = f"unknown clip_model '{clip_model}'; pick one of open_clip.list_models(), e.g. 'ViT-B-32'"
        raise ValueError(msg)
    return int(config["embed_dim"])


def resolve_clip_weights(clip_model: str, pre_trained: bool, clip_weights: str | Path | None) -> Path | None:
    """Local CLIP weights file for ``pre_trained=True`` (fails at once when missing), else ``None``."""
    if not pre_trained:
        return None
    return resolve_weights_file(
        "CLIP text tower", clip_model, clip_weights, "clip_weights", f"open_clip_{clip_model}.bin"
    )


def category_prompt(category: str, template: str = DEFAULT_PROMPT) -> str:
    """``"breakfast_box"`` -> ``"a photo of a breakfast box"``."""
    if not category or not category.strip():
        msg = "category name for the text prior is empty; pass --model.category or use a datamodule with a category"
        raise ValueError(msg)
    return template.format(category.replace("_", " ").replace("-", " ").strip())


@cache
def _encode_prompts_cached(prompts: tuple[str, ...], clip_model: str, weights: str | None, seed: int) -> torch.Tensor:
    import open_clip

    # Random-init towers (tests, demo) must give the same embedding in every process, e.g. on every DDP rank.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(clip_model, pretrained=weights)
    model.eval()
    tokenizer = open_clip.get_tokenizer(clip_model)
    with torch.no_grad():
        embedding = model.encode_text(tokenizer(list(prompts)))
    return F.normalize(embedding.float(), dim=-1)


def encode_category_names(
    categories: list[str],
    clip_model: str = "ViT-B-32",
    weights: Path | None = None,
    prompt: str = DEFAULT_PROMPT,
    seed: int = 0,
) -> torch.Tensor:
    """L2-normalised CLIP text embeddings (N, D) of the category prompts; cached per process."""
    prompts = tuple(category_prompt(name, prompt) for name in categories)
    return _encode_prompts_cached(prompts, clip_model, str(weights) if weights else None, seed).clone()


class CategoryPrior(nn.Module):
    """Holds the cached text embedding(s) and turns them into a prior map for any decoder stage.

    Args:
        text_dim: Width of the CLIP text embedding.
        out_channels: Channels of the prior map.
        num_categories: How many category embeddings the model holds (1 unless trained on several categories).
        grid: Side of the learnable spatial prior grid produced by the FC.
    """

    def __init__(self, text_dim: int, out_channels: int, num_categories: int = 1, grid: int = 4) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.grid = grid
        self.register_buffer("text_embedding", torch.zeros(num_categories, text_dim))
        self.register_buffer("ready", torch.tensor(False))
        self.fc = nn.Linear(text_dim, out_channels * grid * grid)

    def set_embedding(self, embedding: torch.Tensor) -> None:
        """Store the text embedding(s) computed by :func:`encode_category_names`."""
        if embedding.shape != self.text_embedding.shape:
            msg = f"text embedding of shape {tuple(embedding.shape)} does not fit {tuple(self.text_embedding.shape)}"
            raise ValueError(msg)
        self.text_embedding.copy_(embedding)
        self.ready.fill_(True)

    def grid_map(self, batch_size: int, category_index: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, grid, grid) prior map for each image (its own category when ``category_index`` is given)."""
        if category_index is None:
            embedding = self.text_embedding[:1].expand(batch_size, -1)
        else:
            embedding = self.text_embedding[category_index]
        return self.fc(embedding).reshape(-1, self.out_channels, self.grid, self.grid)

    @staticmethod
    def at(grid_map: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
        """Bilinearly upsample the prior map to a decoder stage."""
        return F.interpolate(grid_map, size=size, mode="bilinear", align_corners=False)
