"""Sharp-MAML (Abbas, Xiao, Chen, Chen & Chen, ICML 2022): sharpness-aware MAML.

- lower level (``sharp_variant`` ``lower`` or ``both``, radius ``sharp_rho_lower``): g = grad L_support(theta),
  e = rho g / (||g|| + 1e-12), and the inner update uses the gradient at theta + e (the graph through e kept);
- upper level (``upper`` or ``both``, radius ``sharp_rho_upper``): SAM around the outer Adam step: ascend by
  rho g / ||g|| on the meta-parameters, recompute the meta-loss there (with the co-learner's term when CML is
  on), and descend from the original point with that gradient.

The reference code's default rho is 0.05 (its README's example uses 0.0005); the presets use 0.05. With both
radii 0, Sharp-MAML is MAML bit for bit (tested).
"""

from . import BaseLearner

BASE = BaseLearner(
    name="sharp-maml",
    label="Sharp-MAML",
    reference="Abbas et al., Sharp-MAML: Sharpness-Aware Model-Agnostic Meta Learning, ICML 2022",
    summary="MAML with sharpness-aware (SAM) perturbations of the inner step, the outer step, or both",
    options=("sharp_variant", "sharp_rho_lower", "sharp_rho_upper"),
    presets={"*": dict(sharp_variant="both", sharp_rho_lower=0.05, sharp_rho_upper=0.05)},
)
