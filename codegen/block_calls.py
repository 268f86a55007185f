"""How each block op (fastc.convfirst_block, fastc.mbconv_block, fastc.mlp_block: the fuse-blocks
pass's) runs on the cpu target: its block kernel (one generated loop nest for the whole block,
kernels/block_cpu.py), its layers through oneDNN on weights packed once (what fastc runs without
the block op), or its ATen ops one by one (the op's reference).

Which is legal: the block kernel where it builds for the problem (static shapes per call site;
a refusal is recorded in the report with its reason), oneDNN where it runs (float32). Which runs
is a preference: the choices object picks per problem (kind "library"; MeasuredChoices and the
cost model's choices time the candidates at the first call, HeuristicChoices takes the first in
the order below). The pick is kept per input shape.
"""
from __future__ import annotations

import logging
import threading

import torch
import torch.fx as fx

from fastc.costmodel import KernelFeatures
from fastc.kernels import blocks

log = logging.getLogger("fastc")

BLOCK_OPS = {torch.ops.fastc.convfirst_block.default: "convfirst_block",
             torch.ops.fastc.convnext_block.default: "convnext_block",
             torch.ops.fastc.inverted_block.default: "inverted_block",
             torch.ops.fastc.mbconv_block.default: "mbconv_block",
             torch.ops.fastc.mlp_block.default: "mlp_block"}
REFERENCES = {"convfirst_block": blocks.convfirst_block_reference,
              "convnext_block": blocks.convnext_block_reference, "mbconv_block": blocks.mbconv_block_reference,
              "inverted_block": blocks.inverted_block_reference,
              "mlp_block": blocks.mlp_block_reference}


def block_calls(gm: fx.GraphModule, choices, info) -> dict:
    """node -> the callable that runs it (block op nodes only)."""
    return {n: BlockCall(n.name, BLOCK_OPS[n.target], choices, info, _static(n))
            for n in gm.graph.nodes if n.op == "call_function" and n.target in BLOCK_OPS}


def _static(node: fx.Node) -> bool:
    x = node.args[0].meta.get("val") if isinstance(node.args[0], fx.Node) else None
    return isinstance(x, torch.Tensor) and all(isinstance(d, int) for d in x.shape)


#: The largest MLP (features x hidden) at which the rules put the block kernel first: measured
#: 1.15-3.6x faster than oneDNN's layers up to 256 x 1024 (docs/benchmarks/block-kernels-cpu.md);
#: beyond that, not measured, and large products are a GEMM library's strength.
MLP_BLOCK_KERNEL_MAX = 256 * 1024


def candidates(op: str, channels: int = 0, hidden: int = 0) -> list[str]:
    """In the rules' order of preference: a conv block's kernel keeps its hidden activations in
    cache and ran 1.5-8x faster than oneDNN's layers on every measured block; an MLP block's
    kernel first up to MLP_BLOCK_KERNEL_MAX, oneDNN's layers first beyond."""
    if op == "mlp_block" and channels * hidden > MLP_BLOCK_KERNEL_MAX:
        return ["onednn-layers", "block-kernel", "aten-layers"]
    return ["block-kernel", "onednn-layers", "aten-layers"]


#: Runs of each candidate before the choices object times them: a block kernel's first runs on
#: a fresh libgomp team were slow enough here to lose a measurement it wins 2x afterwards.
WARM_RUNS = 3


class BlockCall:
    def __init__(self, name: str, op: str, choices, info, static: bool = False):
        self.__name__ = name
        self.op, self.choices, self.info, self.static = op, choices, info, static
        self.decided: dict = {}
        self.lock = threading.Lock()
        self._fast = None

    def __call__(self, x, *params):
        fast = self._fast
        if fast is not None:
            return fast(x)
        key = (tuple(x.shape), x.dtype, x.is_contiguous())
        run = self.decided.get(key)
        if run is None:
            with self.lock:
                run = self.decided.get(key) or self._choose(key, x, params)
        return run(x)

    def _choose(self, key, x, params):
        reference = REFERENCES[self.op]
        runs = {"aten-layers": lambda t: reference(t, *params)}
        shape = tuple(x.shape)
        self._try(runs, "block-kernel", lambda: _contiguous(_block_kernel(self.op, shape, params), x), x)
        self._try(runs, "onednn-layers", lambda: _contiguous(blocks.bind_onednn_layers(self.op, shape, params), x), x)
        rows = x.numel() // (x.shape[1] if self.op != "mlp_block" else x.shape[-1])
        channels = x.shape[1] if self.op != "mlp_block" else x.shape[-1]
        hidden = {"convfirst_block": params[3], "convnext_block": params[4], "mbconv_block": params[0],
                  "inverted_block": params[0], "mlp_block": params[4]}[self.op].shape[0]
        order = [c for c in candidates(self.op, channels, hidden) if c in runs]
        features = KernelFeatures(self.__name__, "library", "cpu", sizes={"M": rows, "N": channels, "K": hidden},
                                  ops=1, op_counts={f"fastc.{self.op}": 1},
                                  dtype=str(x.dtype).replace("torch.", ""),
                                  inputs=((list(x.shape), list(x.stride()), str(x.dtype)),), device="cpu")
        pick = self.choices.choose(features, order, lambda c: runs[c](x), self.info.measurements) \
            if len(order) > 1 else order[0]
        if pick not in runs:
            pick = order[0]
        if len(self.decided) >= 256:
            self.decided = {}
        self.decided[key] = runs[pick]
        if self.static:
            self._fast = runs[pick]
        self.info.decisions[self.__name__] = pick
        return runs[pick]

    def _try(self, runs: dict, kind: str, bind, x) -> None:
        """runs[kind] = bind(), once it has run `x` a few times (building what it builds, and
        warming what the first runs touch: libgomp's team, the kernel's stack buffers, oneDNN's
        primitive cache, before any timing); a failure is the report's reason, and that candidate
        is not offered."""
        try:
            run = bind()
            for _ in range(WARM_RUNS):
                run(x)
            runs[kind] = run
        except Exception as e:  # noqa: BLE001 - that implementation cannot run this problem
            reason = f"{kind}: {type(e).__name__}: {str(e)[:300]}"
            self.info.fallbacks.append((self.__name__, reason))
            log.info("fastc: %s: %s", self.__name__, reason)


def _contiguous(run, x):
    """`run`, given its input contiguous (a block kernel reads NCHW or row-major memory): as it is
    for a contiguous `x`, else behind one copy (a permuted input, as ConvNeXt's stem leaves it)."""
    if x.is_contiguous():
        return run
    return lambda t: run(t.contiguous())


def _block_kernel(op: str, shape: tuple, params):
    from fastc.kernels.block_cpu import compile_block
    return compile_block(op, shape, params)
