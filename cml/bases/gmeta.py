"""G-Meta (Huang & Zitnik, NeurIPS 2020) as the CML paper ran it: the implementation of Tan et al. (2022,
Zhen-Tan-dmml/TLP-FSNC) that its Table 3 uses, and the original's prototypical loss as an option.

- **Tan et al.'s G-Meta** (``--gmeta-loss ce``, the default): each node's 2-hop subgraph through the GCN, the
  **mean over the subgraph's nodes** as the node's embedding (hook ``readout``), a linear classifier,
  cross-entropy; 20 first-order inner steps of 0.05 and Adam 1e-3 under the presets (``first_order``).
- **The original G-Meta** (``--gmeta-loss proto``, mims-harvard/G-Meta ``meta.py``): the **centre node's**
  embedding, no classifier (hook ``meta_head``: the embedding itself), and the prototypical loss: softmax over
  minus the squared Euclidean distances to the class means of the support embeddings (hook ``task_logits``,
  :func:`prototype_logits`); in the inner loop the support nodes are their own queries; first order.

The prototypical loss needs the support set inside every query forward: the objective carries the task's
support set to the prediction (:class:`cml.meta.TaskContext`), so every engine, the batched one included, runs
it unchanged. With CML the co-learner phi is a classifier head on the same embedding (the paper's: one hidden
layer of 16 and a linear output), its cross-entropy in the outer loss.

Differences from Tan et al.'s code, kept on purpose: no dropout (the suite's engines are deterministic and every
sampler owns its generator); the GCN's last layer keeps its ReLU; subgraphs are capped at ``max_nodes`` nodes and
normalised within the subgraph (``D^-1/2 (A + I) D^-1/2``) where theirs take the whole 2-hop neighbourhood from the
row-normalised adjacency of the graph; meta-batch 1 and validation every 10 steps as theirs, without their early
stopping (the suite tests the last model). The original G-Meta's code takes the query set's prototypes from the
support forward *before* the last inner update (its ``proto_loss_spt`` returns them); here they are the support
set's at the same parameters as the query embeddings (Snell et al.'s definition).

The prototypical loss on image tasks would be ProtoMAML (Triantafillou et al., 2020), which initialises a linear
head from the prototypes and adapts it, a different algorithm: G-Meta, and so ``--gmeta-loss proto``, runs on
graph tasks only (``families``), and the config says so.

References: Huang & Zitnik, Graph Meta Learning via Local Subgraphs, NeurIPS 2020; Tan, Wang, Ding, Li & Liu,
Transductive Linear Probing: A Novel Framework for Few-Shot Node Classification, LoG 2022; Snell, Swersky & Zemel,
Prototypical Networks for Few-shot Learning, NeurIPS 2017.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from . import BaseLearner, same_head

if TYPE_CHECKING:
    from torch import Tensor

    from ..config import Config
    from ..tasks import TaskEntry
    from . import LogitsFn

#: ``gmeta_loss``'s values.
GmetaLoss = Literal["ce", "proto"]


def prototype_logits(out: "Tensor", support_out: "Tensor", support_y: "Tensor", ways: int) -> "Tensor":
    """G-Meta's prototypical predictions: minus the squared Euclidean distance of each row of ``out`` to each
    class's prototype, the mean of that class's rows of ``support_out``.

    ``out: (n, d)``, ``support_out: (s, d)``, ``support_y: (s,)`` labels in ``0..ways-1`` -> ``(n, ways)``.
    Cross-entropy on these logits is the prototypical loss (softmax over ``-d^2``). Written with a comparison
    against ``arange(ways)`` and a matmul, so that it maps under ``vmap`` and is differentiable twice.

    Worked 2-way 2-shot case (``tests/test_graph_bases.py``), embeddings in 2-D: support class 0 at (0, 0) and
    (2, 0), class 1 at (0, 2) and (0, 4), so the prototypes are c0 = (1, 0) and c1 = (0, 3). The support set as
    its own queries (the inner loop):

    - (0, 0): d0^2 = 1, d1^2 = 9; (2, 0): d0^2 = 1, d1^2 = 13; (0, 2): d0^2 = 5, d1^2 = 1; (0, 4): d0^2 = 17,
      d1^2 = 1;
    - the loss of a point of class c is ``log(1 + exp(d_c^2 - d_other^2))``: log(1 + e^-8), log(1 + e^-12),
      log(1 + e^-4), log(1 + e^-16), i.e. 3.3541e-4, 6.1442e-6, 1.81499e-2, 1.1254e-7; their mean is 4.62290e-3.

    References: Snell, Swersky & Zemel, Prototypical Networks for Few-shot Learning, NeurIPS 2017.
    """
    import torch  # the table is read before torch is imported (cml.bases' docstring)

    onehot = (support_y.unsqueeze(-1) == torch.arange(ways, device=support_y.device)).to(support_out.dtype)  # (s, w)
    prototypes = onehot.transpose(-1, -2) @ support_out / onehot.sum(-2).unsqueeze(-1)  # (ways, d)
    return -(out.unsqueeze(-2) - prototypes).pow(2).sum(-1)  # (n, ways)


def _proto(cfg: "Config") -> bool:
    return cfg.gmeta_loss == "proto"


def _readout(cfg: "Config") -> str:
    return "centre" if _proto(cfg) else "mean"


def _meta_head(cfg: "Config", kind: str) -> str:
    return "embedding" if _proto(cfg) else same_head(cfg, kind)


def _task_logits(cfg: "Config") -> "LogitsFn | None":
    return prototype_logits if _proto(cfg) else None


# Tan et al.'s protocol: hidden 16, 20 first-order inner steps of 0.05 (at test too), Adam 1e-3, one task per outer
# step, 5 queries per class in training and validation and 10 at test, 100 test tasks, validation every 10 steps on
# 20 tasks; the paper's co-learner (one hidden layer of 16, a linear output) and gamma 0.2.
TAN = dict(hidden=16, inner_lr=0.05, inner_steps=20, test_inner_steps=20, first_order=True, meta_lr=1e-3, meta_batch=1,
           queries=5, test_queries=10, test_tasks=100, co_learner="mlp", gamma=0.2)


def tan_presets(inner_lr: float, steps: int) -> dict:
    """The ``quick`` and ``paper`` presets of Tan et al.'s graph bases, with the base's inner step and outer steps.

    ``paper``: their protocol (``steps`` outer steps, validation every 10 on 20 tasks); ``quick``: the same model
    and task shapes with 300 outer steps and one validation in the middle (minutes on 2 CPU cores).
    """
    def paper(task: "TaskEntry") -> dict:
        return dict(TAN, inner_lr=inner_lr, steps=steps, val_interval=10, val_tasks=20, checkpoint_interval=100,
                    log_interval=10)

    def quick(task: "TaskEntry") -> dict:
        return dict(TAN, inner_lr=inner_lr, steps=300, val_interval=150, val_tasks=20, checkpoint_interval=100,
                    log_interval=10)

    return {"paper": paper, "quick": quick}


BASE = BaseLearner(
    name="gmeta",
    label="G-Meta",
    reference="Huang & Zitnik, Graph Meta Learning via Local Subgraphs, NeurIPS 2020 (as Tan et al., 2022 run it)",
    summary="MAML on each node's 2-hop subgraph through a GCN, mean readout and cross-entropy (Tan et al.'s), or "
            "the original's prototypical loss and centre readout (--gmeta-loss proto); first-order inner steps",
    families=("graph",),
    why_only="it reads each node's subgraph; its prototypical loss on images would be ProtoMAML, another algorithm",
    readout=_readout,
    meta_head=_meta_head,
    task_logits=_task_logits,
    options=("gmeta_loss",),
    # Tan et al.'s G-Meta: 1,000 outer steps (their epochs, one task each).
    presets=tan_presets(0.05, 1000),
)
