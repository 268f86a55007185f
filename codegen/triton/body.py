"""The kernel body: values of a kernel's nodes at index expressions, emitted as Triton lines.

Every template (pointwise, reduction, matmul) defines its iteration symbols, then asks for
`body.value(node, index)`: external inputs become masked loads at the strided offset of the
index, views map the index to their input (views.py), pointwise ops apply their rules
(pointwise_ops.py), and the template's own values (a reduction's result, a matmul's
accumulator) are `specials`. Values are computed once per (node, index) and scope.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

import sympy
import torch
import torch.fx as fx

from fastc.ir import ScalarType, TensorType, node_type
from fastc.ir.op_table import entry

from ..errors import Unsupported
from .indexing import Index, Unravel, broadcast, is_one, symbol, to_code
from .options import LowerOptions
from .pointwise_ops import POINTWISE
from .values import TL_DTYPES, Value, compute_dtype, literal
from .views import view_index


@dataclass
class Scope:
    """What a block of lines (the kernel, or one loop body) has computed: reusable inside it."""
    values: dict = field(default_factory=dict)   # (node, index) -> Value
    exprs: dict = field(default_factory=dict)    # expression code -> Value


class KernelBody:
    def __init__(self, kernel, kind: str, opts: LowerOptions = LowerOptions()):
        self.kernel, self.kind = kernel, kind
        self.interpret = opts.interpret  # Triton's interpreter: work around its bf16 rounding
        self.graph_symbols = opts.graph_symbols
        self.members = set(kernel.nodes)
        self.lines: list[str] = []
        self.indent = 1
        self.scopes: list[Scope] = [Scope()]
        self.masks: dict[sympy.Symbol, str | None] = {}  # iteration symbol -> its mask variable
        self.specials: dict = {}                   # (node, component or None) -> fn(index) -> Value
        self.unravel = Unravel()
        self.sizes: set[sympy.Symbol] = set()      # size symbols the body reads (kernel arguments)
        self.strides: set[sympy.Symbol] = set()
        self.helpers: dict[str, str] = {}          # Triton functions the kernel calls: name -> source
        self.count = 0
        self.input_index = {n: i for i, n in enumerate(kernel.inputs)}

    # --- emitting -------------------------------------------------------------------------
    def line(self, text: str) -> None:
        self.lines.append("    " * self.indent + text)

    def fresh(self, prefix: str = "tmp") -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def tmp(self, code: str, dtype, block: bool = True) -> Value:
        """A variable holding `code` (the same expression in this scope or an outer one is reused)."""
        for scope in reversed(self.scopes):
            if code in scope.exprs:
                return scope.exprs[code]
        name = self.fresh()
        self.line(f"{name} = {code}")
        self.scopes[-1].exprs[code] = Value(name, dtype, block)
        return self.scopes[-1].exprs[code]

    def code(self, expr) -> str:
        """Prints an index expression, noting the size symbols it reads."""
        expr = sympy.sympify(expr)
        for s in expr.free_symbols:
            if s not in self.masks and s not in self.strides:
                self.sizes.add(s)
        return to_code(expr)

    def push(self) -> None:
        self.scopes.append(Scope())
        self.indent += 1

    def pop(self) -> None:
        self.scopes.pop()
        self.indent -= 1

    def mask_of(self, exprs) -> str | None:
        symbols = set().union(*[sympy.sympify(e).free_symbols for e in exprs]) if exprs else set()
        masks = sorted({self.masks[s] for s in symbols if self.masks.get(s)})
        return " & ".join(masks) if masks else None

    def is_block(self, exprs) -> bool:
        return any(s in self.masks for e in exprs for s in sympy.sympify(e).free_symbols)

    # --- values ---------------------------------------------------------------------------
    def value(self, node, index: Index) -> Value:
        if not isinstance(node, fx.Node):
            return literal(node)
        index = tuple(sympy.sympify(i) for i in index)
        key = (node, index)
        for scope in reversed(self.scopes):
            if key in scope.values:
                return scope.values[key]
        v = self._compute(node, index)
        self.scopes[-1].values[key] = v
        return v

    def _compute(self, node: fx.Node, index: Index) -> Value:
        if node not in self.members:
            return self.load(node, index)
        if (node, None) in self.specials:
            return self.specials[(node, None)](index)
        if node.target is operator.getitem:
            base, i = node.args
            if (base, i) in self.specials:
                return self.specials[(base, i)](index)
            raise Unsupported(f"getitem {i} of {base.target} in a {self.kind} kernel")
        op = entry(node.target)
        if op is not None and op.kind == "view":
            return self.value(node.args[0], view_index(node, index))
        rule = POINTWISE.get(node.target)
        if rule is None:
            raise Unsupported(f"{node.target} in a {self.kind} kernel")
        return rule(self, node, index)

    def arg(self, node: fx.Node, a, index: Index) -> Value:
        """Operand `a` of pointwise `node`, read at the broadcast of `node`'s index."""
        if not isinstance(a, fx.Node):
            return literal(a)
        t = node_type(a)
        if isinstance(t, TensorType):
            return self.value(a, broadcast(index, node_type(node).shape, t.shape))
        return self.value(a, ())

    def load(self, node: fx.Node, index: Index) -> Value:
        i = self.input_index[node]
        t = node_type(node)
        if isinstance(t, ScalarType):
            return Value(f"in{i}", {"int": torch.int64, "float": torch.float32, "bool": torch.bool}[t.kind], False)
        if not isinstance(t, TensorType):
            raise Unsupported(f"input {node.name} of type {t}")
        offset = sympy.Integer(0)
        for d, (ix, size) in enumerate(zip(index, t.shape)):
            if not is_one(size):
                stride = symbol(f"in{i}_st{d}")
                self.strides.add(stride)
                offset += ix * stride
        mask = self.mask_of(index)
        ptr = f"in{i}_ptr" if offset == 0 else f"in{i}_ptr + {self.code(offset)}"
        code = f"tl.load({ptr}, mask={mask}, other=0)" if mask else f"tl.load({ptr})"
        dtype = compute_dtype(t.dtype)
        if dtype != t.dtype:
            code += f".to({TL_DTYPES[dtype]})"
        return self.tmp(code, dtype, self.is_block(index))

    def cast(self, v: Value, dtype: torch.dtype) -> Value:
        """`v` as compute dtype `dtype` (a Python literal stays a literal)."""
        dtype = compute_dtype(dtype)
        if v.dtype is None:
            if dtype is torch.bool:
                return Value(f"({v.code} != 0)", None, False)
            return v
        if v.dtype == dtype:
            return v
        if dtype is torch.bool:
            return self.tmp(f"({v.code} != 0)", dtype, v.block)
        return self.tmp(f"{v.code}.to({TL_DTYPES[dtype]})", dtype, v.block)

    def stored(self, v: Value, dtype: torch.dtype) -> str:
        """Code for `v` converted to storage dtype `dtype`."""
        if v.dtype is None:
            return f"tl.full([], {v.code}, {TL_DTYPES[dtype]})"
        if v.dtype == dtype:
            return v.code
        if dtype is torch.bool:
            return f"({v.code} != 0)"
        return self.narrow(v.code, dtype) if dtype is torch.bfloat16 and v.dtype is torch.float32 else \
            f"{v.code}.to({TL_DTYPES[dtype]})"

    def narrow(self, code: str, dtype: torch.dtype) -> str:
        """fp32 variable `code` rounded to `dtype`. Triton's interpreter truncates fp32 to bf16,
        so there bf16 rounds to nearest even by hand (exact bits, NaN and inf kept)."""
        if dtype is not torch.bfloat16 or not self.interpret:
            return f"{code}.to({TL_DTYPES[dtype]})"
        bits = self.tmp(f"{code}.to(tl.uint32, bitcast=True)", torch.int64, True).code
        return (f"(({bits} + 0x7FFF + (({bits} >> 16) & 1)) & 0xFFFF0000)"
                f".to(tl.float32, bitcast=True).to(tl.bfloat16)")

    def store(self, j: int, offset, v: Value, dtype: torch.dtype, mask: str | None) -> None:
        ptr = f"out{j}_ptr + {self.code(offset)}"
        m = f", mask={mask}" if mask else ""
        self.line(f"tl.store({ptr}, {self.stored(v, dtype)}{m})")
