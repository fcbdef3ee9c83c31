"""Reproducible training and calibration of the model-based evaluators' shipped weights.

Not imported at evaluation time. Each module is one command:
``python -m tunegate.evaluators.training.nli_train``, ``... .nli_calibrate``, ``... .safety_train``.
"""

__all__: list[str] = []
