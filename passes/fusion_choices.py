"""Preferences for kernel planning: how far to fuse. Correctness lives in plan_kernels.py;
this is the interface a cost model takes over later (it may refuse legal fusions, never
allow illegal ones)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FusionChoices:
    max_ops: int = 64            # ops in one kernel, at most
    epilogues: bool = True       # fuse pointwise consumers into a matrix product
    reductions: bool = True      # fuse pointwise producers/consumers into a reduction

    def wants(self, producer_kind: str, consumer_kind: str, ops_after: int) -> bool:
        """Whether to merge two kernels that may legally merge."""
        if ops_after > self.max_ops:
            return False
        kinds = {producer_kind, consumer_kind}
        if "matmul" in kinds and not self.epilogues:
            return False
        if "reduction" in kinds and not self.reductions:
            return False
        return True
