"""BOIL (Oh, Yoo, Kim & Yun, ICLR 2021): the body adapts, the head is frozen in the inner loop.

The head's inner step size is 0 (``head_inner_lr``; set it to ``inner_lr`` and BOIL is MAML), so the head is
learned in the outer loop only. The authors' 4-conv setting is body 0.5, head 0, one inner step, meta-batch 4,
30,000 outer steps: this project's ``paper`` image preset already. With CML the co-learner, as always, reads
the adapted body features and is not adapted.
"""

from . import BaseLearner


def boil_rates(cfg):
    return {"psi": cfg.inner_lr, "theta": 0.0 if cfg.head_inner_lr is None else cfg.head_inner_lr}


BASE = BaseLearner("boil", "BOIL", role_rates=boil_rates,
                   reference="Oh, Yoo, Kim & Yun, BOIL: Towards Representation Change for Few-shot Learning, ICLR 2021",
                   summary="only the body (psi) adapts in the inner loop; the head is learned in the outer loop")
