"""The one interface behind every preference fastc has, and the process-wide default.

Legality enumerates; a `Choices` object ranks. plan-kernels offers each legal fusion
(`fuse`) and each matrix product it may put in a kernel (`product_in_kernel`);
fuse-product-epilogues each product it may make a library op (`library_product`); fuse-blocks each
residual block it may make one block op (`fuse_block`); code generation
asks for the schedule a kernel runs under when nothing is measured (`schedule`), whether a
schedule is worth building before it is asked for (`build_up_front`), and which of a kernel's
legal candidates (ATen, or generated code under each candidate schedule) runs at a problem
(`choose`; also which implementation of a library op such as fastc.bcq_linear runs: kind
"library", candidates named in the library's order of preference). Every hook is handed the
features of its candidate (features.py). A choices object
may refuse a legal candidate; it is never asked about an illegal one, so swapping it changes
which code runs, never what it computes.

Implementations: HeuristicChoices (rules, nothing measured) and MeasuredChoices (times the
candidates at a kernel's first call per problem). default.py holds the process-wide object.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Sequence

from fastc.ir.schedule import Schedule

from .features import FusionCandidate, KernelFeatures


class Choices(ABC):
    @abstractmethod
    def fuse(self, c: FusionCandidate) -> bool:
        """Whether to merge two kernels that may legally merge."""

    @abstractmethod
    def product_in_kernel(self, k: KernelFeatures) -> bool:
        """Whether a matrix product (a "matmul" kernel with its epilogue) runs as generated code
        on `k.target`; if not, the product is an ATen call and its epilogue a pointwise kernel."""

    def library_product(self, k: KernelFeatures) -> bool:
        """Whether a product with a frozen weight becomes a library op with its epilogue
        (fastc.conv2d_act / fastc.linear_act: kind "library", op_counts naming it, sizes M, N, K,
        M None when it varies); if not, it stays an ATen call and its epilogue a kernel. By
        default every legal one does."""
        return True

    def fuse_block(self, k: KernelFeatures) -> bool:
        """Whether a legal residual block becomes one block op (fuse-blocks: kind "block",
        op_counts naming the op, sizes M rows (pixels or tokens; None when they vary), N channels,
        K hidden width). How a block op runs (its block kernel, or its layers one by one) is then
        `choose`'s pick per problem (kind "library"). By default every legal one does."""
        return True

    @abstractmethod
    def schedule(self, k: KernelFeatures) -> Schedule:
        """The schedule `k` runs under when none is measured (`k.sizes` are known)."""

    @abstractmethod
    def build_up_front(self, k: KernelFeatures, schedule: Schedule) -> bool:
        """Whether to compile `k` under `schedule` (a parallel one: every kernel gets its serial
        build) with the rest of its graph, before any call asks for it; a schedule not built up
        front is compiled on first use."""

    @abstractmethod
    def choose(self, k: KernelFeatures, candidates: Sequence, run: Callable | None = None,
               records: list | None = None):
        """One of `candidates` (ATEN or Schedules, all legal, `k.sizes` known) for `k`.

        `run(candidate)` runs the kernel at this problem that way; without it (at compile time)
        return None to decide when the kernel runs. Each measurement taken is appended to
        `records` as a dict (see MeasuredChoices)."""


class ChoosesKernels(Choices):
    """Choices that decide only `choose` (which candidate a kernel runs) and leave fusion,
    products, schedules and what to build up front to `self.rules` (another Choices, set by
    the subclass): MeasuredChoices, ModelChoices, CollectingChoices."""
    rules: Choices

    def fuse(self, c: FusionCandidate) -> bool:
        return self.rules.fuse(c)

    def product_in_kernel(self, k: KernelFeatures) -> bool:
        return self.rules.product_in_kernel(k)

    def library_product(self, k: KernelFeatures) -> bool:
        return self.rules.library_product(k)

    def fuse_block(self, k: KernelFeatures) -> bool:
        return self.rules.fuse_block(k)

    def schedule(self, k: KernelFeatures) -> Schedule:
        return self.rules.schedule(k)

    def build_up_front(self, k: KernelFeatures, schedule: Schedule) -> bool:
        return self.rules.build_up_front(k, schedule)
