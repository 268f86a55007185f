"""Checks the types a graph declares against what its ops produce.

Every op is run under FakeTensorMode on fake operands of their *declared* types (sizes symbolic
where the types have symbols: `f32[s0, 8]`), and the dtype and shape it gives are compared with the
type declared for its result. So each op is checked on its own: a wrong declaration is reported at
the op that makes it, and the ops after it are checked against that declaration.

An op that cannot be evaluated that way (no fake kernel, a data-dependent result, operands it
rejects, a Python callable that is not a known-harmless scalar function, ...) is left unchecked;
its declared type stands for what follows. Only a result that is known and contradicts the
declaration is an error, so every graph fastc captures passes.

Size symbols: a symbol named `u<n>` (data-dependent, unbacked) never has a value; any other symbol
gets a distinct example value (32 times the n-th prime: divisible by small powers of two, no
one a multiple of another), and two sizes that are not the same expression are different when
they differ at those values. An `int` graph argument named like a size symbol (`%s0: int`, as
Dynamo names them) is that symbol; other scalar arguments are unknown values.
"""
from __future__ import annotations

import logging

import sympy
import torch
import torch.fx as fx
from torch.utils._pytree import tree_flatten, tree_map

from .targets import target_name
from .types import ScalarType, TensorType, TupleType, type_of_value


class TypeMismatch(ValueError):
    """A node whose declared type contradicts what its op gives."""

    def __init__(self, node: fx.Node, message: str):
        self.node = node
        super().__init__(message)


def check_types(gm: fx.GraphModule, symbols: dict[str, sympy.Symbol] | None = None) -> None:
    """Raises TypeMismatch at the first op whose declared type (`node.meta["type"]`) contradicts
    the dtype or shape the op gives for its operands' declared types. `symbols`: the graph's size
    symbols by name (the parser's), else they are collected from the types."""
    _Checker(symbols if symbols is not None else _collect_symbols(gm)).run(gm)


_UNKNOWN = object()  # a value the checker does not know: its op was not evaluated, no type was declared

# Python callables (not ATen ops) that are safe to evaluate on fake values: scalar arithmetic on
# sizes and getitem. Anything else named in a text file is never called while parsing it.
_SAFE_MODULES = ("_operator", "operator", "math")
_SAFE_CALLABLES = {getattr(torch, name) for name in (
    "sym_max", "sym_min", "sym_float", "sym_int", "sym_not", "sym_ite", "sym_sqrt", "sym_sum")
    if hasattr(torch, name)}
# Not evaluated: printing, and runtime checks on sizes (on the example sizes they would teach the
# ShapeEnv facts that hold for those values only).
_SKIPPED_OPS = {"aten::_print", "aten::_assert_scalar", "aten::_assert_async", "aten::sym_constrain_range",
                "aten::sym_constrain_range_for_size"}


def _collect_symbols(gm: fx.GraphModule) -> dict[str, sympy.Symbol]:
    found: dict[str, sympy.Symbol] = {}

    def visit(t):
        if isinstance(t, TensorType):
            for d in t.shape:
                if isinstance(d, sympy.Expr):
                    for s in d.free_symbols:
                        found.setdefault(s.name, s)
        elif isinstance(t, TupleType):
            for item in t.items:
                visit(item)
    for node in gm.graph.nodes:
        visit(node.meta.get("type"))
    return found


class _Checker:
    def __init__(self, symbols: dict[str, sympy.Symbol]):
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.fx.experimental.symbolic_shapes import ShapeEnv

        self.symbols = symbols
        self.shape_env = ShapeEnv() if symbols else None
        # No fallback kernels: an op without a fake kernel would otherwise run for real, on real
        # zero tensors of the declared sizes.
        self.mode = FakeTensorMode(shape_env=self.shape_env, allow_non_fake_inputs=True,
                                   allow_fallback_kernels=False)
        self.sizes: dict[sympy.Symbol, torch.SymInt] = {}       # parser symbol -> SymInt
        self.to_env: dict[sympy.Symbol, sympy.Expr] = {}       # parser symbol -> ShapeEnv symbol
        self.from_env: dict[sympy.Symbol, sympy.Symbol] = {}   # and back, for messages
        self.hints: dict[sympy.Symbol, sympy.Integer] = {}     # parser symbol -> example value
        self.env_hints: dict[sympy.Symbol, sympy.Integer] = {}  # ShapeEnv symbol -> example value

    # -- size symbols ---------------------------------------------------------------------------
    def size(self, symbol: sympy.Symbol) -> torch.SymInt:
        if symbol not in self.sizes:
            from torch._dynamo.source import ConstantSource
            from torch.fx.experimental.symbolic_shapes import DimDynamic
            env = self.shape_env
            if symbol.name.startswith("u"):
                value = env.create_unbacked_symint()
            else:
                hint = 32 * sympy.prime(len(self.hints) + 1)  # 64, 96, 160, 224, ...
                expr = env.create_symbol(hint, source=ConstantSource(f"fastc_size_{symbol.name}"),
                                         dynamic_dim=DimDynamic.DYNAMIC)
                value = env.create_symintnode(expr, hint=hint)
                self.hints[symbol] = self.env_hints[expr] = sympy.Integer(hint)
            self.sizes[symbol] = value
            self.to_env[symbol] = value.node.expr
            self.from_env[value.node.expr] = symbol
        return self.sizes[symbol]

    def dim(self, d) -> int | torch.SymInt:
        """A declared size as an int or a SymInt of the ShapeEnv."""
        if isinstance(d, int):
            return d
        for s in d.free_symbols:
            self.size(s)
        if isinstance(d, sympy.Symbol):
            return self.sizes[d]
        return self.shape_env.create_symintnode(d.xreplace(self.to_env), hint=self.hint(d))

    def hint(self, d) -> int | None:
        """The example value of a declared size; None if it has none (unbacked symbols)."""
        if isinstance(d, int):
            return d
        for s in d.free_symbols:
            self.size(s)
        value = d.xreplace(self.hints)
        return int(value) if isinstance(value, sympy.Integer) else None

    # -- fake values of declared types ----------------------------------------------------------
    def fake(self, typ, computed=_UNKNOWN, placeholder: fx.Node | None = None):
        """A fake value of type `typ`: tensors from the declaration (contiguous), scalars from the
        op's result when it gave one (so sizes read off a tensor stay that tensor's sizes)."""
        if isinstance(typ, TensorType):
            if self.is_contiguous_of(typ, computed):
                return computed  # the same as a new one (and making one costs more than the op)
            shape = [self.dim(d) for d in typ.shape]
            with self.mode:
                return torch.empty(shape, dtype=typ.dtype, device=typ.device)
        if isinstance(typ, ScalarType):
            if computed is not _UNKNOWN and type_of_value(computed) == typ:
                return computed
            if placeholder is not None and typ.kind == "int" and placeholder.name in self.symbols:
                return self.size(self.symbols[placeholder.name])
            env = self.shape_env
            if env is None:
                return _UNKNOWN
            make = {"int": env.create_unbacked_symint, "float": env.create_unbacked_symfloat,
                    "bool": env.create_unbacked_symbool}[typ.kind]
            return make()
        if isinstance(typ, TupleType):
            items = computed if isinstance(computed, (tuple, list)) and len(computed) == len(typ.items) \
                else [_UNKNOWN] * len(typ.items)
            return tuple(None if t is None else self.fake(t, c) for t, c in zip(typ.items, items))
        return computed

    def is_contiguous_of(self, typ: TensorType, value) -> bool:
        """`value` is a contiguous fake tensor of exactly type `typ` (sizes the same expressions)."""
        if not isinstance(value, torch.Tensor) or value.dtype != typ.dtype or value.dim() != len(typ.shape) \
                or str(value.device) != typ.device:
            return False
        stride = 1
        for d, size, actual_stride in reversed(list(zip(typ.shape, value.shape, value.stride()))):
            if isinstance(d, int):
                expected = d
            else:
                self.dim(d)
                expected = d.xreplace(self.to_env)
            if _expr(size) != expected or _expr(actual_stride) != stride:
                return False
            stride = stride * (max(expected, 1) if isinstance(expected, int) else expected)
        return True

    # -- the check ------------------------------------------------------------------------------
    def run(self, gm: fx.GraphModule):
        # An op that fails on its operands is expected here (it is left unchecked): FakeTensorMode
        # would log each such failure with its traceback.
        quiet = _DropRecords()
        _FAKE_TENSOR_LOG.addFilter(quiet)
        try:
            self._run(gm)
        finally:
            _FAKE_TENSOR_LOG.removeFilter(quiet)

    def _run(self, gm: fx.GraphModule):
        values: dict[fx.Node, object] = {}
        for node in gm.graph.nodes:
            declared = node.meta.get("type")
            if node.op in ("placeholder", "get_attr"):
                values[node] = self._fake_or_unknown(declared, placeholder=node if node.op == "placeholder" else None)
            elif node.op == "call_function":
                computed = self.evaluate(node, values)
                if computed is not _UNKNOWN and declared is not None and self.differs(declared, computed):
                    raise TypeMismatch(node, f"%{node.name} is declared {declared}, but "
                                             f"{target_name(node.target)} gives {self.show(computed)}")
                values[node] = computed if declared is None else self._fake_or_unknown(declared, computed)

    def _fake_or_unknown(self, typ, computed=_UNKNOWN, placeholder=None):
        try:
            return self.fake(typ, computed, placeholder)
        except Exception:  # a size the fake tensors cannot represent: nothing after it is checked
            return _UNKNOWN

    def evaluate(self, node: fx.Node, values: dict):
        target = node.target
        if isinstance(target, torch._ops.OpOverload):
            if target._schema.name in _SKIPPED_OPS:
                return _UNKNOWN
        elif not (target in _SAFE_CALLABLES or getattr(target, "__module__", None) in _SAFE_MODULES):
            return _UNKNOWN
        args, kwargs = tree_map(lambda a: values[a] if isinstance(a, fx.Node) else a, (node.args, node.kwargs))
        leaves, _ = tree_flatten((args, kwargs))
        if any(leaf is _UNKNOWN for leaf in leaves):
            return _UNKNOWN
        try:
            with self.mode, torch.no_grad():
                return target(*args, **kwargs)
        except Exception:  # cannot be evaluated on these operands: left unchecked
            return _UNKNOWN

    def differs(self, declared, computed) -> bool:
        if isinstance(declared, TensorType):
            if not isinstance(computed, torch.Tensor):
                return True
            return (computed.dtype != declared.dtype or computed.dim() != len(declared.shape)
                    or any(self.dim_differs(d, c) for d, c in zip(declared.shape, computed.shape)))
        if isinstance(declared, ScalarType):
            if isinstance(computed, torch.Tensor) or isinstance(computed, (tuple, list)):
                return True
            actual = type_of_value(computed)
            return actual is not None and actual != declared
        if isinstance(declared, TupleType):
            if not isinstance(computed, (tuple, list)) or len(computed) != len(declared.items):
                return True
            return any(t is not None and c is not None and self.differs(t, c)
                       for t, c in zip(declared.items, computed))
        return False

    def dim_differs(self, declared, computed) -> bool:
        if isinstance(computed, int) and isinstance(declared, int):
            return computed != declared
        if not isinstance(declared, int):
            for s in declared.free_symbols:
                self.size(s)
        expected = declared if isinstance(declared, int) else declared.xreplace(self.to_env)
        actual = computed.node.expr if isinstance(computed, torch.SymInt) else int(computed)
        if sympy.sympify(expected) == sympy.sympify(actual):
            return False
        # Not the same expression: different if they differ at the symbols' example values.
        a = self.hint(declared)
        b = computed.node.hint if isinstance(computed, torch.SymInt) else int(computed)
        if b is None:  # a size the ShapeEnv derived from an unbacked one: its own symbols may have values
            value = sympy.sympify(actual).xreplace(self.env_hints)
            b = int(value) if isinstance(value, sympy.Integer) else None
        if a is None or b is None:
            return False  # data-dependent: cannot tell
        return int(a) != int(b)

    def show(self, value) -> str:
        """The type of a computed value, in the graph's own size symbols."""
        t = type_of_value(value)
        if t is None:
            return type(value).__name__
        return str(_rename(t, self.from_env))


_FAKE_TENSOR_LOG = logging.getLogger("torch._subclasses.fake_tensor")


class _DropRecords(logging.Filter):
    def filter(self, record) -> bool:
        return False


def _expr(size):
    """An int, or the sympy expression of a SymInt."""
    if isinstance(size, torch.SymInt):
        expr = size.node.expr
        return int(expr) if expr.is_Integer else expr
    return int(size)


def _rename(t, names: dict):
    if isinstance(t, TensorType):
        return TensorType(t.dtype, tuple(d if isinstance(d, int) else d.xreplace(names) for d in t.shape), t.device)
    if isinstance(t, TupleType):
        return TupleType(tuple(None if i is None else _rename(i, names) for i in t.items))
    return t

