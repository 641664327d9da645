"""MAML++ (Antoniou, Edwards & Storkey, How to train your MAML, ICLR 2019), as the reference code
HowToTrainYourMAMLPytorch implements it. Each trick is its own switch (``--no-msl`` etc.), so an ablation turns
them on one at a time; with every switch off MAML++ is MAML bit for bit (tested).

- ``msl``: the multi-step loss, weighted by :func:`cml.meta.msl_weights` over ``msl_anneal_steps`` outer steps;
- ``learn_inner_lr``: one learnable inner step size per tensor and per step, initialised to the tensor's rate;
- ``per_step_bn``: BatchNorm weights and biases of shape ``[steps, C]``, indexed by the inner step and learned in
  the outer loop only. The reference always normalises with batch statistics, as this project does, so per-step
  running statistics would not change any output and are not kept;
- ``first_order_steps``: derivative-order annealing, first order for that many outer steps, then second order;
- ``cosine_lr``: cosine annealing of the outer learning rate from ``meta_lr`` to ``min_meta_lr``.

With learnable rates or per-step BatchNorm, BatchNorm weights are not adapted in the inner loop (the reference's
default). The reference's argparse default task learning rate is 0.1 while its JSON configs say 0.01 (a key the
code never reads), so the reference ran with 0.1: the presets use 0.1.
"""

from . import BaseLearner

_SWITCHES = dict(msl=True, learn_inner_lr=True, per_step_bn=True, cosine_lr=True)
# The reference's epochs are 500 outer steps each.
_EPOCH = 500


def _quick(kind: str, task: str) -> dict:
    # Minutes on 2 CPU cores: two inner steps (the multi-step loss needs more than one) at the quick preset's
    # own step size, annealed over the first third of the run.
    if kind == "sinusoid":  # no BatchNorm in the MLP
        return dict(msl=True, learn_inner_lr=True, cosine_lr=True, inner_steps=2, msl_anneal_steps=1000,
                    min_meta_lr=1e-5)
    return dict(_SWITCHES, inner_steps=2, test_inner_steps=3, msl_anneal_steps=200, min_meta_lr=1e-5)


def _paper(kind: str, task: str) -> dict:
    if kind == "sinusoid":
        return dict(msl=True, learn_inner_lr=True, cosine_lr=True, msl_anneal_steps=10 * _EPOCH, min_meta_lr=1e-5)
    if task in ("miniimagenet", "cifar-fs", "fc100", "flower"):
        # MiniImagenet 5-way: 48 filters, 84 px, 5 inner steps, 2 tasks per batch, 15 queries, MSL over 15 of
        # 100 epochs, meta LR 1e-3.
        return dict(_SWITCHES, filters=48, inner_lr=0.1, inner_steps=5, test_inner_steps=5, meta_batch=2,
                    queries=15, meta_lr=1e-3, steps=100 * _EPOCH, msl_anneal_steps=15 * _EPOCH, min_meta_lr=1e-5)
    # Omniglot: 64 filters, 28 px, 5 inner steps, 8 tasks per batch, MSL over 10 of 100 epochs, min LR 1e-5.
    return dict(_SWITCHES, filters=64, inner_lr=0.1, inner_steps=5, test_inner_steps=5, meta_batch=8,
                steps=100 * _EPOCH, msl_anneal_steps=10 * _EPOCH, min_meta_lr=1e-5)


BASE = BaseLearner(
    name="maml++",
    label="MAML++",
    reference="Antoniou, Edwards & Storkey, How to train your MAML, ICLR 2019",
    summary="MAML with the multi-step loss, learnable per-step inner rates, per-step BatchNorm, "
            "derivative-order annealing and a cosine outer learning rate",
    options=("msl", "msl_anneal_steps", "learn_inner_lr", "per_step_bn", "first_order_steps", "cosine_lr",
             "min_meta_lr"),
    presets={"quick": _quick, "paper": _paper},
)
