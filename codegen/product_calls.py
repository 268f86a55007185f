"""How each fastc.conv2d_act / fastc.linear_act op runs on the cpu target: oneDNN on a weight
packed once, or the ATen ops one by one (fastc.kernels.onednn has both).

Which is legal is the library's business (float32 on the CPU, a torch with oneDNN: checked by the
pass that made the op); which runs is a preference: the choices object picks per problem (kind
"library", sizes of the product, candidates in the order the rules below prefer, which
HeuristicChoices takes as is and MeasuredChoices or a cost model's choices time). The pick is kept
per input shape; an implementation that fails at its first run is dropped for that problem, with
the reason in the graph's report. The weight is packed at the first problem that picks oneDNN.
"""
from __future__ import annotations

import logging
import threading

import torch
import torch.fx as fx

from fastc.costmodel import KernelFeatures
from fastc.kernels import onednn

log = logging.getLogger("fastc")

CONV2D_ACT = torch.ops.fastc.conv2d_act.default
LINEAR_ACT = torch.ops.fastc.linear_act.default

# Multiply-adds from which oneDNN's GEMM is preferred by the rules for a product (below it, its
# fixed cost per call, about 10 us here, loses to ATen's): measured on the 2-core EPYC, where
# oneDNN won 1.7-2.1x from 8M multiply-adds and tied at 1.7M (docs/benchmarks/cpu-products.md).
LINEAR_MIN_MACS = 4_000_000


def product_calls(gm: fx.GraphModule, choices, info) -> dict:
    """node -> the callable that runs it (conv2d_act and linear_act nodes only)."""
    return {n: (ConvCall if n.target is CONV2D_ACT else LinearCall)(n.name, choices, info)
            for n in gm.graph.nodes if n.op == "call_function" and n.target in (CONV2D_ACT, LINEAR_ACT)}


class _ProductCall:
    op = ""

    def __init__(self, name: str, choices, info):
        self.__name__ = name
        self.choices, self.info = choices, info
        self.decided: dict = {}     # problem key -> the implementation, a callable
        self.lock = threading.Lock()
        self.packed = None          # the oneDNN weight, once a problem picks oneDNN
        self._weight = None

    def __call__(self, *args):
        key = self.key(args)
        run = self.decided.get(key)
        if run is None:
            with self.lock:
                run = self.decided.get(key) or self._choose(key, args)
        return run(*args)

    def _choose(self, key, args):
        M, N, K = self.sizes(args)
        candidates = self.candidates(M * N * K)
        x = args[0]
        features = KernelFeatures(self.__name__, "library", "cpu", sizes={"M": M, "N": N, "K": K}, ops=1,
                                  op_counts={self.op: 1}, dtype=str(x.dtype).replace("torch.", ""),
                                  inputs=((list(x.shape), list(x.stride()), str(x.dtype)),), device="cpu")
        runs = {"aten": self.aten}
        try:
            runs["onednn"] = self.onednn(args)
            runs["onednn"](*args)  # builds oneDNN's primitive for this problem before any timing
        except Exception as e:  # noqa: BLE001 - oneDNN cannot run this problem: ATen runs it
            self._drop(f"oneDNN: {type(e).__name__}: {e}")
            runs.pop("onednn", None)
            candidates = ["aten"]
        pick = self.choices.choose(features, candidates, lambda c: runs[c](*args), self.info.measurements)
        if pick not in runs:
            pick = "aten"
        self.decided[key] = runs[pick]
        self.info.decisions[self.__name__] = pick
        return runs[pick]

    def _drop(self, reason: str) -> None:
        reason = reason[:300]
        self.info.fallbacks.append((self.__name__, reason))
        log.warning("fastc: %s runs its ATen ops: %s", self.__name__, reason)

    def _packed_for(self, weight, make):
        if self.packed is None or self._weight is not weight:
            self.packed, self._weight = make(), weight
        return self.packed


class ConvCall(_ProductCall):
    op = "fastc.conv2d_act"

    @staticmethod
    def key(args):
        return tuple(args[0].shape)

    @staticmethod
    def sizes(args):
        x, w = args[0], args[1]
        n, _, h, wd = x.shape
        return n * h * wd, w.shape[0], w.shape[1] * w.shape[2] * w.shape[3]

    @staticmethod
    def candidates(macs: int) -> list[str]:
        return ["onednn", "aten"]   # oneDNN won on 64 of the 70 zoo convolutions measured

    aten = staticmethod(onednn.conv2d_act_aten)

    def onednn(self, args):
        x, w, _, stride, padding, dilation, groups = args[:7]
        packed = self._packed_for(w, lambda: onednn.PackedConv(w, stride, padding, dilation, groups, x.shape))

        def run(x, w, b, stride, padding, dilation, groups, residual, act, act_args, any_layout):
            return packed(x, b, residual, act, act_args, any_layout)
        return run


class LinearCall(_ProductCall):
    op = "fastc.linear_act"

    @staticmethod
    def key(args):
        return tuple(args[0].shape)

    @staticmethod
    def sizes(args):
        x, w = args[0], args[1]
        return x.numel() // max(1, x.shape[-1]), w.shape[0], w.shape[1]

    @staticmethod
    def candidates(macs: int) -> list[str]:
        return ["onednn", "aten"] if macs >= LINEAR_MIN_MACS else ["aten", "onednn"]

    aten = staticmethod(onednn.linear_act_aten)

    def onednn(self, args):
        w = args[1]
        packed = self._packed_for(w, lambda: onednn.PackedLinear(w))

        def run(x, w, b, residual, act, act_args):
            return packed(x, b, residual, act, act_args)
        return run
