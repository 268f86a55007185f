"""Types of graph values: what a node produces, independent of FakeTensors.

A node's type lives in `node.meta["type"]`. After capture it is derived from the FakeTensor in
`node.meta["val"]`; the parser sets it from the text; a pass that makes a node sets it. Sizes are
ints or sympy expressions over the graph's size symbols (s0, s1, ...), so a dynamic-shape graph
prints and parses like a static one.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

import sympy
import torch

DTYPE_NAMES: dict[torch.dtype, str] = {
    torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16", torch.float64: "f64",
    torch.int64: "i64", torch.int32: "i32", torch.int16: "i16", torch.int8: "i8",
    torch.uint8: "u8", torch.bool: "b8", torch.complex64: "c64", torch.complex128: "c128",
    torch.float8_e4m3fn: "f8e4m3fn", torch.float8_e5m2: "f8e5m2", torch.uint16: "u16",
    torch.uint32: "u32", torch.uint64: "u64", torch.complex32: "c32",
}
DTYPES_BY_NAME = {name: dtype for dtype, name in DTYPE_NAMES.items()}

Dim = int | sympy.Expr


@dataclass(frozen=True)
class TensorType:
    dtype: torch.dtype
    shape: tuple[Dim, ...]
    device: str = "cpu"

    def __str__(self) -> str:
        dims = ", ".join(str(d) for d in self.shape)
        device = "" if self.device == "cpu" else "{" + self.device + "}"
        return f"{DTYPE_NAMES[self.dtype]}[{dims}]{device}"

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def numel(self) -> Dim:
        return sympy.prod(self.shape) if not self.is_static else _prod(self.shape)


@dataclass(frozen=True)
class ScalarType:
    """A Python scalar (int, float, bool), possibly symbolic (a SymInt size)."""
    kind: str  # "int", "float" or "bool"

    def __str__(self) -> str:
        return self.kind


@dataclass(frozen=True)
class TupleType:
    items: tuple[object, ...]  # TensorType | ScalarType | TupleType | None

    def __str__(self) -> str:
        return "(" + ", ".join("none" if t is None else str(t) for t in self.items) + ")"


def _prod(dims) -> int:
    out = 1
    for d in dims:
        out *= d
    return out


def dim_of(size) -> Dim:
    """An int, or the sympy expression behind a SymInt."""
    if isinstance(size, torch.SymInt):
        expr = size.node.expr
        return int(expr) if expr.is_Integer else expr
    return int(size)


def type_of_value(value):
    """The type of a runtime or fake value, or None when it has none we print."""
    if isinstance(value, torch.Tensor):
        device = str(value.device)
        return TensorType(value.dtype, tuple(dim_of(s) for s in value.shape),
                          "cpu" if device == "cpu" else device)
    if isinstance(value, (bool, torch.SymBool)):
        return ScalarType("bool")
    if isinstance(value, (int, torch.SymInt)):
        return ScalarType("int")
    if isinstance(value, (float, torch.SymFloat)):
        return ScalarType("float")
    if isinstance(value, (tuple, list)):
        return TupleType(tuple(type_of_value(v) for v in value))
    return None


def node_type(node: torch.fx.Node):
    """The node's type: `meta["type"]`, derived from `meta["val"]` the first time it is asked."""
    if "type" not in node.meta:
        if "val" in node.meta:
            node.meta["type"] = type_of_value(node.meta["val"])
        elif node.op == "get_attr":
            node.meta["type"] = type_of_value(getattr(node.graph.owning_module, node.target))
        else:
            return None
    return node.meta["type"]


def _size_functions() -> dict:
    from torch.utils._sympy import functions as tf
    return {"Max": sympy.Max, "Min": sympy.Min, "Mod": tf.Mod, "PythonMod": tf.PythonMod,
            "FloorDiv": tf.FloorDiv, "CeilDiv": tf.CeilDiv, "floor": sympy.floor,
            "ceiling": sympy.ceiling, "CleanDiv": tf.CleanDiv, "ModularIndexing": tf.ModularIndexing}


def parse_size(source: str, symbols: dict[str, sympy.Symbol]) -> Dim:
    """A size expression as printed (`2*s0`, `(s1//2)`, `Max(1, s0)`) -> int or sympy expression.

    `//` means torch's FloorDiv (what `str()` of a size expression prints), not sympy's floor.
    Raises ValueError on anything else.
    """
    from torch.utils._sympy.functions import FloorDiv, PythonMod
    functions = _size_functions()

    def build(node):
        if isinstance(node, ast.Expression):
            return build(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
            return sympy.Integer(node.value)
        if isinstance(node, ast.Name):
            if node.id not in symbols:
                symbols[node.id] = sympy.Symbol(node.id, integer=True, positive=True)
            return symbols[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -build(node.operand)
        if isinstance(node, ast.BinOp):
            a, b = build(node.left), build(node.right)
            ops = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
                   ast.FloorDiv: lambda: FloorDiv(a, b), ast.Mod: lambda: PythonMod(a, b),
                   ast.Pow: lambda: a ** b}
            if type(node.op) in ops:
                return ops[type(node.op)]()
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in functions:
            return functions[node.func.id](*[build(a) for a in node.args])
        raise ValueError(f"unsupported size expression element {ast.dump(node)[:40]}")

    try:
        expr = build(ast.parse(source, mode="eval"))
    except SyntaxError as e:
        raise ValueError(f"malformed size expression {source!r}") from e
    return int(expr) if expr.is_Integer else expr
