"""The matmul template: one mm/addmm/bmm as tiled tl.dot, with its pointwise epilogue fused.

Each program computes a BLOCK_M x BLOCK_N tile (tiles in groups of GROUP_M tile rows, for L2
reuse; program_id(2) is the bmm batch), looping over K
in BLOCK_K steps with an fp32 accumulator. Operands are read through the kernel body, so views
(a transposed weight) and casts in front of the matmul cost no copies. Epilogue ops (bias,
activation, residual, scaling, casts) are evaluated on the tile and stored once; every output
must have as many elements as the matmul result.
"""
from __future__ import annotations

import sympy
import torch

from fastc.ir import node_type
from fastc.ir.op_table import OP_TABLE

from ..errors import Unsupported
from .body import KernelBody
from .indexing import as_expr, is_one, numel, ravel, same_size, symbol
from .options import LowerOptions
from .spec import KernelSpec, assemble, output_slots
from .values import TL_DTYPES, Value
from .views import reshape_index

aten = torch.ops.aten
# The op table's matrix products (mm, addmm, bmm).
MATMULS = {op for op, e in OP_TABLE.items() if e.kind == "matmul"}


def lower_matmul(kernel, opts: LowerOptions = LowerOptions()) -> KernelSpec:
    interpret = opts.interpret
    mms = [n for n in kernel.nodes if n.target in MATMULS]
    if len(mms) != 1:
        raise Unsupported(f"matmul kernel with {len(mms)} matmuls (needs exactly one mm/addmm/bmm)")
    mm = mms[0]
    body = KernelBody(kernel, "matmul", opts)
    batched = mm.target is aten.bmm.default
    a, b = mm.args[-2:] if mm.target is not aten.addmm.default else mm.args[1:3]
    a_shape, b_shape = node_type(a).shape, node_type(b).shape
    M, K = a_shape[-2:]
    N = b_shape[-1]
    if any(as_expr(d) == 0 for d in (M, N, K)):
        raise Unsupported(f"{mm.target} with an empty dimension (M, N, K = {M}, {N}, {K})")
    if is_one(M) or is_one(N):
        # The template's loads drop size-1 dims from their pointers but not from their masks.
        raise Unsupported(f"{mm.target} with M or N of size 1 (M, N, K = {M}, {N}, {K}): "
                          "a matrix-vector product")
    out_dtype = node_type(mm).dtype
    if out_dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise Unsupported(f"{mm.target} of {out_dtype}")
    m, n, ka, kb, bi = (symbol(s) for s in ("mindex", "nindex", "ka", "kb", "bindex"))
    body.masks.update({m: "mmask", n: "nmask", ka: "kamask", kb: "kbmask", bi: None})
    lead = (bi,) if batched else ()

    body.line("acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)")
    body.line("for koffset in range(0, K, BLOCK_K):")
    body.push()
    body.line("ka = koffset + tl.arange(0, BLOCK_K)[None, :]")
    body.line("kb = koffset + tl.arange(0, BLOCK_K)[:, None]")
    body.line("kamask = ka < K")
    body.line("kbmask = kb < K")
    # Triton's interpreter multiplies bf16 wrongly: there, bf16 operands go in as (exact) fp32.
    dot_dtype = TL_DTYPES[torch.float32 if interpret and out_dtype is torch.bfloat16 else out_dtype]
    av = body.value(a, lead + (m, ka))
    bv = body.value(b, lead + (kb, n))
    body.line(f"a = tl.where(mmask & kamask, {av.code}, 0.0).to({dot_dtype})")
    body.line(f"b = tl.where(kbmask & nmask, {bv.code}, 0.0).to({dot_dtype})")
    precision = ', input_precision="ieee"' if out_dtype is torch.float32 else ""
    body.line(f"acc = tl.dot(a, b, acc{precision})")
    body.pop()

    out_index = lead + (m, n)
    alpha, beta = mm.kwargs.get("alpha", 1), mm.kwargs.get("beta", 1)

    mm_shape = node_type(mm).shape
    expected = tuple(sympy.Integer(0) if is_one(d) else i for i, d in zip(out_index, mm_shape))

    def result(index):
        if tuple(index) != expected:
            raise Unsupported(f"{mm.target} result read at another index ({index})")
        if mm.target is not aten.addmm.default:
            return Value("acc", torch.float32, True)
        bias = body.cast(body.arg(mm, mm.args[0], index), torch.float32).code
        acc = "acc" if alpha == 1 else f"acc * {alpha!r}"
        bias = bias if beta == 1 else f"{bias} * {beta!r}"
        return body.tmp(f"{acc} + {bias}", torch.float32)
    body.specials[(mm, None)] = result

    slots, groups = output_slots(kernel)
    flat = ravel(out_index, mm_shape)
    for j, s in enumerate(slots):
        if not same_size(numel(s.type.shape), numel(mm_shape)):
            raise Unsupported(f"matmul kernel output of shape {list(s.type.shape)}, not {list(mm_shape)}")
        index = reshape_index(out_index, mm_shape, s.type.shape)
        body.store(j, flat, s.value(body, index), s.type.dtype, "mmask & nmask")
    header = ["pid = tl.program_id(0)",
              "tiles_m = tl.cdiv(M, BLOCK_M)",
              "tiles_n = tl.cdiv(N, BLOCK_N)",
              "first_m = (pid // (GROUP_M * tiles_n)) * GROUP_M",
              "group_m = tl.minimum(tiles_m - first_m, GROUP_M)",
              "pid_m = (first_m + (pid % (GROUP_M * tiles_n)) % group_m).to(INDEX_DTYPE)",
              "pid_n = ((pid % (GROUP_M * tiles_n)) // group_m).to(INDEX_DTYPE)",
              "mindex = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)[:, None]",
              "nindex = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]",
              "mmask = mindex < M",
              "nmask = nindex < N"]
    sizes = {"M": M, "N": N, "K": K}
    if batched:
        header.insert(0, "bindex = tl.program_id(2).to(INDEX_DTYPE)")
        sizes["B"] = a_shape[0]
    return assemble(body, kernel, "matmul", header, slots, groups, sizes,
                    ["BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M"])
