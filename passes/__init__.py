"""fastc's graph passes. Each is a small declared unit (see base.py), registered by name."""
from .accuracy import output_error
from .base import PASSES, Pass, make_pass, parse_pipeline, register
from .context import PassContext
from .lossy import LossyPass, Proposal, Proposals
from .metrics import METRICS, AccuracyCheck, Agreement, MetricError, RelativeError, UserMetric
from .common_subexpressions import CommonSubexpressions
from .dead_code import DeadCode
from .fold_batchnorm import FoldBatchNorm
from .fold_constants import FoldConstants
from .remove_noops import RemoveNoops

__all__ = [
    "PASSES", "METRICS", "AccuracyCheck", "Agreement", "LossyPass", "MetricError", "Pass", "Proposal", "Proposals",
    "RelativeError", "UserMetric", "PassContext", "make_pass", "output_error", "parse_pipeline", "register",
    "CommonSubexpressions", "DeadCode", "FoldBatchNorm", "FoldConstants", "RemoveNoops",
]
from .plan_kernels import PlanKernels  # noqa: E402
from .fuse_attention import FuseAttention  # noqa: E402
from .product_epilogues import FuseProductEpilogues  # noqa: E402
from .fuse_blocks import FuseBlocks  # noqa: E402
from .merge_products import MergeSiblingProducts  # noqa: E402
from .grouped_kv_attention import GroupedKvAttention  # noqa: E402
from .index_as_view import IndexAsView  # noqa: E402

__all__ += ["FuseAttention", "FuseBlocks", "FuseProductEpilogues", "GroupedKvAttention", "IndexAsView",
            "MergeSiblingProducts", "PlanKernels"]

# Lossy passes: they run only when the user names them (the pass manager measures their cost).
from .add_weight_noise import AddWeightNoise  # noqa: E402
from .layer_skip import LayerSkip  # noqa: E402
from .prune_channels import PruneChannels  # noqa: E402
from .prune_heads import PruneHeads  # noqa: E402
from .prune_magnitude import PruneMagnitude  # noqa: E402
from .recalibrate_batchnorm import RecalibrateBatchNorm  # noqa: E402
from .round_weights import RoundWeights  # noqa: E402
from .shift_add import ShiftAdd  # noqa: E402
from .sparse_2to4 import Sparse2to4  # noqa: E402
from .zero_weights import ZeroWeights  # noqa: E402

__all__ += ["AddWeightNoise", "LayerSkip", "PruneChannels", "PruneHeads", "PruneMagnitude", "RecalibrateBatchNorm", "RoundWeights", "ShiftAdd", "Sparse2to4", "ZeroWeights"]

# Legalisation for torch-mlir: the cpu target runs these on each kernel's graph (codegen/cpu/stages.py).
from .spell_out_tanh_gelu import SpellOutTanhGelu  # noqa: E402
from .split_squeeze_dims import SplitSqueezeDims  # noqa: E402

__all__ += ["SpellOutTanhGelu", "SplitSqueezeDims"]
