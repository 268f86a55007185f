"""fastc's graph passes. Each is a small declared unit (see base.py), registered by name."""
from .accuracy import AccuracyBudget, output_error
from .base import PASSES, Pass, make_pass, parse_pipeline, register
from .context import PassContext
from .common_subexpressions import CommonSubexpressions
from .dead_code import DeadCode
from .fold_batchnorm import FoldBatchNorm
from .fold_constants import FoldConstants
from .remove_noops import RemoveNoops

__all__ = [
    "PASSES", "AccuracyBudget", "Pass", "PassContext", "make_pass", "output_error", "parse_pipeline", "register",
    "CommonSubexpressions", "DeadCode", "FoldBatchNorm", "FoldConstants", "RemoveNoops",
]
from .plan_kernels import PlanKernels  # noqa: E402

__all__.append("PlanKernels")
