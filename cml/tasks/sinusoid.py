"""Sinusoid regression (Finn et al., 2017): y = A sin(x - phase), K support and Q query points per task
(:mod:`cml.sinusoid`); an MLP 1-40-40-1, MSE; Figure 2's fitted curves are its end-of-training record."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, DataError
from ..records import FITS
from . import TaskEntry, TaskFamily, no_image_options

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from ..config import Config
    from ..meta import EvalResult

_COMMON = dict(shots=10, queries=10, hidden=40, inner_lr=0.01, inner_steps=1, test_inner_steps=10, meta_lr=1e-3,
               val_tasks=100, test_tasks=600, co_learner="linear")
_LONG = dict(steps=70000, val_interval=1000, checkpoint_interval=1000, log_interval=100)


class Sinusoid(TaskFamily):
    name = "sinusoid"
    help_group = field_label = "sinusoid"
    classification = False
    metric = "mse"
    higher_is_better = False
    width_field = "hidden"
    co_learners = ("linear", "mlp")
    end_record = FITS
    presets = {
        # CML's regression (the paper's Section 4.1): 1-40-40-1, the co-learner a hidden layer of 40 and an output,
        # meta-batch 4, one inner step of 0.01, gamma 0.2, one step at test; K from --shots (5, 10 or 20). The
        # paper states no iteration count: MAML's 70,000.
        "paper": dict(_COMMON, meta_batch=4, inner_steps=1, test_inner_steps=1, gamma=0.2, co_learner="mlp", **_LONG),
        # MAML (Finn et al., 2017) sinusoid: 1-40-40-1, alpha 0.01, meta-batch 25, Adam 1e-3, 70k steps.
        "maml-paper": dict(_COMMON, meta_batch=25, **_LONG),
        # Minutes on 2 CPU cores.
        "quick": dict(_COMMON, meta_batch=10, steps=3000, val_interval=500, checkpoint_interval=500, log_interval=50),
    }

    def loss(self, out: "Tensor", y: "Tensor") -> "Tensor":
        from torch.nn import functional as F  # torch: see the package docstring

        return F.mse_loss(out, y)

    def results(self, res: "EvalResult") -> list[tuple[str, list[float]]]:
        """The MSE of every evaluation protocol measured (``mse`` with theta'; ``mse_dagger``, ``mse_dagger_eq9``,
        ``mse_dagger_noadapt`` with phi: :data:`cml.meta.PROTOCOLS`), and before adaptation."""
        return [(f"mse{key}", values) for key, values in res.loss.items()] + [("mse_before", res.pre_loss)]

    def check(self, cfg: "Config") -> None:
        no_image_options(cfg, "sinusoid")
        if cfg.data is not None:
            raise ConfigError(f"task 'sinusoid' generates its own data; remove data={cfg.data!r}")

    def load(self, cfg: "Config") -> None:
        return None  # tasks are generated

    def in_channels(self, data: Any) -> int:
        return 1

    def sampler(self, cfg: "Config", data: Any, split: str, gen: "torch.Generator", ways: int, shots: int,
                queries: int, device: "torch.device | None" = None):
        from ..sinusoid import SinusoidSampler

        return SinusoidSampler(shots, queries, gen)

    def features(self, cfg: "Config", in_channels: int, width: int, norm_layer: Any) -> "nn.Module":
        from ..layers import MLP

        return MLP(width)

    def describe(self, cfg: "Config") -> str:
        return f"sinusoid, {cfg.shots}-shot"

    def data_summary(self, entry: TaskEntry, data: str | None, image_size: int, seed: int) -> str:
        raise DataError("sinusoid tasks are generated (amplitude U[0.1, 5], phase U[0, pi], x U[-5, 5]); there is "
                        "no data set to describe")


FAMILY = Sinusoid()
TASKS = (TaskEntry("sinusoid", FAMILY, "sine regression, y = A sin(x - phase)", needs_data=False),)
