"""cml: Cooperative Meta-Learning (Shin, Han & Kim, UAI 2024) and its baselines, with diagnostics."""

__version__ = "0.1.0"
