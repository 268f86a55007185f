"""Library ops whose implementation the choices object picks per problem, on the native CPU target.

`fastc.bcq_linear` (what the shift-add pass puts in place of a product) has two CPU
implementations that compute the same values: the native BCQ kernel (fastc.kernels.bcq: shift
and add over the weight's bit planes, no dense weight; fastest for a few rows, decode) and
dequantize-then-matmul (rebuild the fp32 weight, one GEMM; fastest for many rows). Which is legal
is the library's business (the native kernel takes fp32 x); which runs is a preference, so each
bcq_linear node of a graph compiled for the cpu target becomes a `BCQLinearCall` that asks the
choices object at each new number of rows (kind "library", sizes M, N, K; candidates in the
library's own order of preference, which HeuristicChoices takes as is and MeasuredChoices times),
records what was measured in the graph's report, and keeps the pick for that problem. An
implementation that fails at its first run is dropped for that problem, with the reason recorded.
"""
from __future__ import annotations

import logging
import threading

import torch
import torch.fx as fx

from fastc.costmodel import KernelFeatures
from fastc.kernels.bcq import PackedBCQ, bcq_linear_cpu, native_max_rows

log = logging.getLogger("fastc")

BCQ_LINEAR = torch.ops.fastc.bcq_linear.default


def library_calls(gm: fx.GraphModule, choices, info) -> dict:
    """node -> the callable that runs it in place of its op (bcq_linear nodes only)."""
    return {n: BCQLinearCall(n.name, choices, info) for n in gm.graph.nodes
            if n.op == "call_function" and n.target is BCQ_LINEAR}


class BCQLinearCall:
    def __init__(self, name: str, choices, info):
        self.__name__ = name
        self.choices, self.info = choices, info
        self.decided: dict = {}
        self.lock = threading.Lock()

    def __call__(self, x, bits, scales, bias, group_size, in_features):
        packed = PackedBCQ(bits, scales, bits.shape[2], in_features, group_size)
        key = (x.numel() // max(1, x.shape[-1]), x.dtype)
        pick = self.decided.get(key)
        if pick is None:
            with self.lock:
                pick = self.decided.get(key) or self._choose(key, x, packed, bias)
        return bcq_linear_cpu(x, packed, bias, kernel=pick)

    def candidates(self, rows: int, dtype: torch.dtype) -> list[str]:
        if dtype != torch.float32:
            return ["dequantize"]
        return ["native", "dequantize"] if rows <= native_max_rows() else ["dequantize", "native"]

    def _choose(self, key, x, packed, bias) -> str:
        rows, dtype = key
        candidates = self.candidates(rows, dtype)
        features = KernelFeatures(self.__name__, "library", "cpu",
                                  sizes={"M": rows, "N": packed.out_features, "K": packed.in_features},
                                  ops=1, op_counts={"fastc.bcq_linear": 1}, dtype=str(dtype).replace("torch.", ""),
                                  inputs=((list(x.shape), list(x.stride()), str(dtype)),), device="cpu")
        pick = self.choices.choose(features, candidates, lambda c: bcq_linear_cpu(x, packed, bias, kernel=c),
                                   self.info.measurements)
        if pick == "native":
            try:
                bcq_linear_cpu(x, packed, bias, kernel="native")
            except Exception as e:  # noqa: BLE001 - the kernel cannot be built here: the other one runs
                reason = f"{type(e).__name__}: {e}"[:300]
                self.info.fallbacks.append((self.__name__, f"native BCQ kernel: {reason}"))
                log.warning("fastc: %s runs dequantize-then-matmul: the native BCQ kernel failed (%s)",
                            self.__name__, reason)
                pick = "dequantize"
        self.decided[key] = pick
        return pick
