"""ANIL (Raghu, Raghu, Bengio & Vinyals, ICLR 2020): only the head adapts in the inner loop (BOIL's opposite).

This file is the whole of ANIL: the registry in ``cml/bases/__init__.py`` finds it, and the config, the CLI,
the trainer, sweeps and figures read it from the table.
"""

from . import BaseLearner


def anil_rates(cfg):
    return {"psi": 0.0, "theta": cfg.inner_lr if cfg.head_inner_lr is None else cfg.head_inner_lr}


BASE = BaseLearner("anil", "ANIL", role_rates=anil_rates,
                   reference="Raghu, Raghu, Bengio & Vinyals, Rapid Learning or Feature Reuse?, ICLR 2020",
                   summary="only the head (theta) adapts in the inner loop; the body is learned in the outer loop")
