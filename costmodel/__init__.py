"""Preferences: which of the legal candidates fastc takes, behind one interface.

Passes and code generation enumerate what is legal (fusions, schedules, ATen or generated code)
and ask one `Choices` object (choices.py) to decide, handing it each candidate's features
(features.py). Two implementations: `HeuristicChoices` (rules, decided at compile time) and
`MeasuredChoices` (the fastest measured at a kernel's first call per problem; every timing is
recorded for a cost model to learn from). Swap them with `set_default_choices` (the process) or
the `choices` option (one compilation); neither changes results, only which code runs.
"""
from .choices import Choices
from .default import compile_choices, default_choices, set_default_choices
from .features import ATEN, FusionCandidate, KernelFeatures, kernel_features, problem_key
from .heuristic import HeuristicChoices
from .measured import MeasuredChoices
from .model_choices import ModelChoices

__all__ = [
    "ATEN", "Choices", "FusionCandidate", "HeuristicChoices", "KernelFeatures", "MeasuredChoices", "ModelChoices",
    "compile_choices", "default_choices", "kernel_features", "problem_key", "set_default_choices",
]
