"""Pure analysis functions: representation similarity (CKA), gradient similarity and norms, t-SNE maps
and silhouettes, and confidence intervals. None of them touches a model, the trainer or the file system, and
nothing here imports ``cml`` (tested); ``cml.recording`` is the trainer's side that feeds them and writes the
records."""

from .cka import linear_cka, linear_cka_features
from .embedding import silhouette, tsne_embed
from .gradients import block_of, blockwise_cosine_similarity, blockwise_grad_norm, cosine_similarity, grad_norm
from .stats import mean_ci95, normal_ci95

__all__ = [
    "block_of",
    "blockwise_cosine_similarity",
    "blockwise_grad_norm",
    "cosine_similarity",
    "grad_norm",
    "linear_cka",
    "linear_cka_features",
    "mean_ci95",
    "normal_ci95",
    "silhouette",
    "tsne_embed",
]
