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
from fastc.costmodel.heuristic import LIBRARY_LINEAR_MIN_MACS
from fastc.kernels import onednn

log = logging.getLogger("fastc")

CONV2D_ACT = torch.ops.fastc.conv2d_act.default
LINEAR_ACT = torch.ops.fastc.linear_act.default

def product_calls(gm: fx.GraphModule, choices, info) -> dict:
    """node -> the callable that runs it (conv2d_act and linear_act nodes only)."""
    return {n: (ConvCall if n.target is CONV2D_ACT else LinearCall)(n.name, choices, info, _static(n))
            for n in gm.graph.nodes if n.op == "call_function" and n.target in (CONV2D_ACT, LINEAR_ACT)}


def _static(node: fx.Node) -> bool:
    """Whether the op's input has one shape only (then its first pick is its only one)."""
    x = node.args[0].meta.get("val") if isinstance(node.args[0], fx.Node) else None
    return isinstance(x, torch.Tensor) and all(isinstance(d, int) for d in x.shape)


class _ProductCall:
    op = ""

    def __init__(self, name: str, choices, info, static: bool = False):
        self.__name__ = name
        self.choices, self.info, self.static = choices, info, static
        self.decided: dict = {}     # input shape -> the bound implementation (static: one)
        self.lock = threading.Lock()
        self.packed = None          # the oneDNN weight, made at the first problem
        self._fast = None           # static shapes, once picked: the implementation itself

    def __call__(self, *args):
        fast = self._fast
        if fast is not None:
            return fast(*args)
        key = tuple(args[0].shape)
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
        runs = {"aten": self.bind("aten", args)}
        try:
            if self.packed is None:
                self.packed = self.pack(args)
            runs["onednn"] = self.bind("onednn", args)
            runs["onednn"](*args)  # builds oneDNN's primitive for this problem before any timing
        except Exception as e:  # noqa: BLE001 - oneDNN cannot run this problem: ATen runs it
            self._drop(f"oneDNN: {type(e).__name__}: {e}")
            runs.pop("onednn", None)
            candidates = ["aten"]
        pick = self.choices.choose(features, candidates, lambda c: runs[c](*args), self.info.measurements)
        if pick not in runs:
            pick = "aten"
        if len(self.decided) >= 256:
            self.decided = {}  # many shapes (dynamic): start over, not grow forever
        self.decided[key] = runs[pick]
        if self.static:
            self._fast = runs[pick]
        self.info.decisions[self.__name__] = pick
        return runs[pick]

    def _drop(self, reason: str) -> None:
        reason = reason[:300]
        self.info.fallbacks.append((self.__name__, reason))
        log.warning("fastc: %s runs its ATen ops: %s", self.__name__, reason)


class ConvCall(_ProductCall):
    op = "fastc.conv2d_act"

    @staticmethod
    def sizes(args):
        x, w = args[0], args[1]
        n, _, h, wd = x.shape
        return n * h * wd, w.shape[0], w.shape[1] * w.shape[2] * w.shape[3]

    @staticmethod
    def candidates(macs: int) -> list[str]:
        return ["onednn", "aten"]   # faster on 41 of the 50 zoo convolutions (cpu-products.md)

    @staticmethod
    def pack(args):
        x, w, _, stride, padding, dilation, groups = args[:7]
        return onednn.PackedConv(w, stride, padding, dilation, groups, x.shape)

    def bind(self, kind: str, args):
        _, w, _, stride, padding, dilation, groups, residual, act, act_args, any_layout = args
        return onednn.bind_conv2d_act(kind, w, stride, padding, dilation, groups, residual is not None, act,
                                      act_args, any_layout, packed=self.packed)


class LinearCall(_ProductCall):
    op = "fastc.linear_act"

    @staticmethod
    def sizes(args):
        x, w = args[0], args[1]
        return x.numel() // max(1, x.shape[-1]), w.shape[0], w.shape[1]

    @staticmethod
    def candidates(macs: int) -> list[str]:
        return ["onednn", "aten"] if macs >= LIBRARY_LINEAR_MIN_MACS else ["aten", "onednn"]

    @staticmethod
    def pack(args):
        return onednn.PackedLinear(args[1])

    def bind(self, kind: str, args):
        _, w, _, residual, act, act_args = args
        return onednn.bind_linear_act(kind, w, residual is not None, act, act_args, packed=self.packed)
