"""ModelChoices: a learned cost model ranks a kernel's candidates; measuring only where it is unsure.

At a kernel's first call per problem every legal candidate (ATen, and generated code under each
schedule) is described by the features of its MLIR (`KernelFeatures.describe`, mlir_features.py;
a schedule whose loop transformations do not apply to the kernel raises there and is not a
candidate). The model (learned.py) orders them. When it is sure (its predicted times of the best
two differ by more than `margin`) the first candidate that builds runs, and nothing is measured;
when it is unsure, only its `top_k` are measured (MeasuredChoices) and the fastest is kept. With
max-autotune (`autotune=True`) the top `autotune_k` are always measured.

Everything else (fusion, products, the schedule before any call, what to build up front) is
`rules`' call, as for MeasuredChoices. Every decision is counted in `stats` (kernels decided,
unsure, measured candidates, seconds describing and predicting) for reports and benchmarks.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Sequence

from .choices import Choices, ChoosesKernels
from .features import ATEN, KernelFeatures
from .heuristic import HeuristicChoices
from .measured import MeasuredChoices


class ModelChoices(ChoosesKernels):
    #: Offered every legal schedule of a kernel (codegen's candidate_schedules), not only those built.
    ranks_every_schedule = True

    def __init__(self, model, rules: Choices | None = None, top_k: int = 3, margin: float = 0.05,
                 autotune: bool = False, autotune_k: int = 8):
        self.model = model
        self.rules = rules if rules is not None else HeuristicChoices()
        self.top_k, self.margin = top_k, margin
        self.autotune, self.autotune_k = autotune, autotune_k
        self.measured = MeasuredChoices(self.rules)
        self.stats = {"kernels": 0, "unsure": 0, "measured": 0, "not_described": 0,
                      "describe_s": 0.0, "predict_s": 0.0}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ModelChoices({getattr(self.model, 'path', 'model')}, top_k={self.top_k}, autotune={self.autotune})"

    def choose(self, k: KernelFeatures, candidates: Sequence, run: Callable | None = None,
               records: list | None = None):
        if len(candidates) == 1:
            return self.rules.choose(k, candidates, run, records)
        if k.kind == "library":  # no model ranks a library's implementations; timing them is cheap
            return self.measured.choose(k, candidates, run, records) if run is not None else None
        if run is None:
            return None  # decided at the first call, where a pick can be checked to build
        if k.describe is None:  # a target the model knows nothing of
            self._count(not_described=1)
            return self.measured.choose(k, candidates, run, records)
        ranked, unsure = self.rank(k, candidates)
        if not ranked:
            return self.measured.choose(k, candidates, run, records)
        if unsure or self.autotune:
            top = ranked[:self.autotune_k if self.autotune else self.top_k]
            self._count(unsure=int(unsure), measured=len(top))
            return self.measured.choose(k, top, run, records)
        for candidate in ranked:
            try:
                run(candidate)  # builds it: the first that builds is taken
                return candidate
            except Exception:  # noqa: BLE001 - not legal for this kernel after all: the next one
                if candidate == ATEN:
                    raise
        return ranked[0]

    def rank(self, k: KernelFeatures, candidates: Sequence) -> tuple[list, bool]:
        """(the legal candidates, best predicted first; whether the model is unsure)."""
        started = time.perf_counter()
        rows, legal = [], []
        for candidate in candidates:
            try:
                rows.append(k.describe(candidate))
                legal.append(candidate)
            except Exception:  # noqa: BLE001 - the schedule does not apply to this kernel
                continue
        described = time.perf_counter()
        if not rows:
            return [], True
        order, unsure = self.model.order(rows, top_k=self.top_k, margin=self.margin)
        self._count(kernels=1, describe_s=described - started, predict_s=time.perf_counter() - described)
        return [legal[i] for i in order], unsure

    def _count(self, **amounts) -> None:
        with self._lock:
            for name, amount in amounts.items():
                self.stats[name] += amount
