"""What a kernel's entry function takes and returns: one `Param` per input and output, with the
layout it is compiled for, from the graph's metadata (`describe`)."""
from __future__ import annotations

from dataclasses import dataclass

import sympy
import torch

from fastc.ir import TensorType, node_type
from fastc.ir.types import ScalarType

from ..errors import Unsupported
from .refusals import refuse_dtypes, refuse_empty, refuse_overflowing_scalars
from .subgraph import example_value, flat_numel, size_expr

# Torch dtypes the native target handles, by MLIR element type.
ELEMENT_TYPES = {
    torch.float32: "f32", torch.float64: "f64", torch.float16: "f16", torch.bfloat16: "bf16",
    torch.int64: "i64", torch.int32: "i32", torch.int16: "i16", torch.int8: "i8", torch.uint8: "i8",
    torch.bool: "i1",
}


@dataclass(frozen=True)
class Param:
    """One argument of an entry function: a tensor (memref) or a scalar."""
    kind: str            # "tensor" | "int" | "float" | "bool"
    rank: int = 0
    contiguous: bool = True
    strides: tuple | None = None   # a non-contiguous layout known when compiling (static sizes)
    shape: tuple | None = None     # the sizes the entry function takes, when all are numbers
    # An N-D contiguous tensor passed as 1-D of its numel elements (shape (numel,)): the kernel
    # runs flat (subgraph.flat_numel). The caller describes the tensor so; no view is made.
    flat: bool = False

    def memref(self, tensor_type: str) -> str:
        inner = tensor_type[len("tensor<"):-1]
        if self.contiguous or self.rank == 0:
            return f"memref<{inner}>"
        if self.strides is not None:  # static strides: LLVM sees unit inner strides, folds addresses
            return f"memref<{inner}, strided<[{', '.join(map(str, self.strides))}]>>"
        return f"memref<{inner}, strided<[{', '.join(['?'] * self.rank)}], offset: ?>>"


def describe(kernel) -> dict:
    """What the entry function of `kernel` takes and returns: params, out_params, per output its
    shape, strides (None when contiguous) and dtype, and whether some input size is symbolic
    (dynamic_inputs). Raises Unsupported for what the target refuses (refusals.py)."""
    refuse_dtypes(kernel)
    refuse_overflowing_scalars(kernel)
    dynamic_inputs = refuse_empty(kernel)
    numel = flat_numel(kernel)
    params = [_param(n, numel) for n in kernel.inputs]
    out_params, shapes, strides, dtypes = [], [], [], []
    for n in kernel.outputs:
        t = node_type(n)
        if not isinstance(t, TensorType):
            raise Unsupported(f"output {n.name} of type {t} (only tensors)")
        if t.dtype not in ELEMENT_TYPES:
            raise Unsupported(f"{n.name}: dtype {t.dtype} on the native CPU target")
        shape, st, contiguous = _tensor_layout(n)
        out_params.append(_tensor_param(shape, st, contiguous, numel))
        shapes.append(shape)
        strides.append(None if contiguous else st)
        dtypes.append(t.dtype)
    return {"params": params, "out_params": out_params, "shapes": shapes, "strides": strides, "dtypes": dtypes,
            "dynamic_inputs": dynamic_inputs}


def product(shape):
    total = 1
    for size in shape:
        total = total * size
    return total


def _is_contiguous(shape, strides) -> bool:
    expected = 1
    for size, stride in reversed(list(zip(shape, strides))):
        if size != 1 and sympy.simplify(sympy.sympify(stride) - sympy.sympify(expected)) != 0:
            return False
        expected = expected * size
    return True


def _tensor_layout(node) -> tuple[tuple, tuple, bool]:
    val = example_value(node)
    if not isinstance(val, torch.Tensor):
        raise Unsupported(f"input {node.name} has no example tensor")
    shape = tuple(size_expr(s) for s in val.shape)
    strides = tuple(size_expr(s) for s in val.stride())
    return shape, strides, _is_contiguous(shape, strides)


def _static(strides, contiguous: bool) -> tuple | None:
    """The strides of a non-contiguous layout when all are known numbers (compiled in)."""
    if contiguous or any(isinstance(st, sympy.Basic) for st in strides):
        return None
    return tuple(int(st) for st in strides)


def _tensor_param(shape, strides, contiguous: bool, flat: int | None) -> Param:
    """A tensor's Param; passed as 1-D of `flat` elements when the kernel runs flat (all its
    tensors but 0-d ones have its shape, contiguous: subgraph.flat_numel)."""
    if flat is not None and len(shape):
        return Param("tensor", 1, True, None, (flat,), flat=True)
    static = tuple(int(s) for s in shape) if all(not isinstance(s, sympy.Basic) or s.is_Integer for s in shape) else None
    return Param("tensor", len(shape), contiguous, _static(strides, contiguous), static)


def _param(node, flat: int | None = None) -> Param:
    t = node_type(node)
    if isinstance(t, TensorType):
        if t.dtype not in ELEMENT_TYPES:
            raise Unsupported(f"{node.name}: dtype {t.dtype} on the native CPU target")
        shape, strides, contiguous = _tensor_layout(node)
        return _tensor_param(shape, strides, contiguous, flat)
    if isinstance(t, ScalarType) and t.kind in ("int", "float", "bool"):
        return Param(t.kind)
    raise Unsupported(f"input {node.name} of type {t}")
