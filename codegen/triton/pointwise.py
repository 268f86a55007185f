"""The pointwise template: one flat loop over the elements of the kernel's outputs.

Each program handles XBLOCK consecutive elements of the iteration shape (the largest output);
per-dimension indices come from the flat index, and every input is read at its own strides, so
transposed, sliced and broadcast inputs need no copies. Outputs are written contiguously; every
output must have as many elements as the iteration shape (views of it are fine).
"""
from __future__ import annotations

from ..errors import Unsupported
from .body import KernelBody
from .indexing import is_one, numel, same_size, split, symbol
from .options import LowerOptions
from .spec import KernelSpec, assemble, output_slots


def lower_pointwise(kernel, opts: LowerOptions = LowerOptions()) -> KernelSpec:
    body = KernelBody(kernel, "pointwise", opts)
    slots, groups = output_slots(kernel)
    if not slots:
        raise Unsupported("pointwise kernel without outputs")
    main = max(slots, key=lambda s: (len(s.type.shape), -slots.index(s))).type.shape
    total = numel(main)
    if total == 0:
        raise Unsupported("pointwise kernel with an empty output")
    for s in slots:
        if not same_size(numel(s.type.shape), total):
            raise Unsupported(f"pointwise outputs of different sizes ({list(main)} and {list(s.type.shape)})")
    xindex = symbol("xindex")
    body.masks[xindex] = "xmask"
    dims = []
    for d, (size, expr) in enumerate(zip(main, split(xindex, main))):
        if not is_one(size):
            dims.append(symbol(f"x{d}"))
            body.masks[dims[-1]] = "xmask"
            body.line(f"x{d} = {body.code(expr)}")
    body.unravel.register(xindex, main, tuple(dims))
    for j, s in enumerate(slots):
        v = s.value(body, body.unravel(xindex, s.type.shape))
        body.store(j, xindex, v, s.type.dtype, "xmask")
    header = ["xoffset = tl.program_id(0).to(INDEX_DTYPE) * XBLOCK",
              "xindex = xoffset + tl.arange(0, XBLOCK)",
              "xmask = xindex < xnumel"]
    return assemble(body, kernel, "pointwise", header, slots, groups, {"xnumel": total}, ["XBLOCK"])
