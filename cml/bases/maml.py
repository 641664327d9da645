"""MAML (Finn, Abbeel & Levine, ICML 2017): SGD on every weight of psi and theta in the inner loop."""

from . import BaseLearner

BASE = BaseLearner("maml", "MAML", reference="Finn, Abbeel & Levine, Model-Agnostic Meta-Learning, ICML 2017",
                   summary="SGD on psi and theta in the inner loop, second-order meta-gradient")
