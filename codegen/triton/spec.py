"""A generated kernel as data: Triton source plus what its launcher needs (JSON, cacheable).

`KernelSpec` holds no Python objects: parameters, output shapes and launch sizes are strings of
host code over the graph's size symbols, which are bound from the real inputs at each call.
`assemble` builds a spec from a template's KernelBody.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import sympy
import torch
import torch.fx as fx

from fastc.ir import ScalarType, TensorType, TupleType, node_type
from fastc.ir.types import DTYPE_NAMES, DTYPES_BY_NAME

from ..errors import Unsupported
from .indexing import to_code

HEADER = "import triton\nimport triton.language as tl\n"


@dataclass
class KernelSpec:
    name: str
    kind: str
    source: str
    params: list = field(default_factory=list)     # ["input", i] | ["stride", i, d] | ["output", j] | ["symbol", s] | ["size", code]
    outputs: list = field(default_factory=list)    # {"dtype", "shape": [code], "group": k, "component": c | None}
    groups: list = field(default_factory=list)     # per kernel output: "tensor" or "tuple"
    bindings: list = field(default_factory=list)   # [symbol, input i, dim | None]
    sizes: dict = field(default_factory=dict)      # schedule sizes (xnumel, rnumel, M, ...) -> code
    inputs: list = field(default_factory=list)     # per input: {"kind": "tensor"|"scalar", "rank", "static": [int|None]}
    covers: dict = field(default_factory=dict)     # block -> size it must cover (a persistent RBLOCK)
    switch: dict = field(default_factory=dict)     # "PERSISTENT" -> [size, limit]: a variant chosen per call

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> "KernelSpec":
        return KernelSpec(**json.loads(text))


@dataclass
class Slot:
    """One tensor a kernel writes: a kernel output, or one component of a tuple output."""
    node: fx.Node
    component: int | None
    type: TensorType
    group: int

    def value(self, body, index):
        if self.component is None:
            return body.value(self.node, index)
        if (self.node, self.component) not in body.specials:
            raise Unsupported(f"component {self.component} of {self.node.target}")
        return body.specials[(self.node, self.component)](tuple(sympy.sympify(i) for i in index))


def output_slots(kernel) -> tuple[list[Slot], list[str]]:
    slots, groups = [], []
    for k, node in enumerate(kernel.outputs):
        t = node_type(node)
        if isinstance(t, TensorType):
            slots.append(Slot(node, None, t, k))
            groups.append("tensor")
        elif isinstance(t, TupleType) and all(isinstance(c, TensorType) for c in t.items):
            slots += [Slot(node, c, ct, k) for c, ct in enumerate(t.items)]
            groups.append("tuple")
        else:
            raise Unsupported(f"kernel output {node.name} of type {t}")
    return slots, groups


def bindings(kernel) -> dict[str, list[list]]:
    """Where each size symbol's value comes from at run time: every dim of an input, or int input,
    that holds it (the launcher checks that they agree)."""
    found: dict[str, list] = {}
    for i, node in enumerate(kernel.inputs):
        t = node_type(node)
        if isinstance(t, TensorType):
            for d, size in enumerate(t.shape):
                if isinstance(size, sympy.Symbol):
                    found.setdefault(size.name, []).append([size.name, i, d])
        elif isinstance(t, ScalarType) and t.kind == "int":
            val = node.meta.get("val")
            expr = val.node.expr if isinstance(val, torch.SymInt) else sympy.Symbol(node.name)
            if isinstance(expr, sympy.Symbol):
                found.setdefault(expr.name, []).append([expr.name, i, None])
    return found


def assemble(body, kernel, kind: str, header: list[str], slots, groups, sizes: dict, constexprs: list[str],
             covers: dict | None = None, switch: dict | None = None) -> KernelSpec:
    """The spec of a template's kernel: signature, source and launch data."""
    params, names = [], []
    inputs = []
    for i, node in enumerate(kernel.inputs):
        t = node_type(node)
        if isinstance(t, TensorType):
            params.append(["input", i]); names.append(f"in{i}_ptr")
            inputs.append({"kind": "tensor", "rank": len(t.shape), "dtype": DTYPE_NAMES[t.dtype],
                           "static": [d if isinstance(d, int) else None for d in t.shape]})
        else:
            params.append(["input", i]); names.append(f"in{i}")
            inputs.append({"kind": "scalar", "type": getattr(t, "kind", "int")})
    for j in range(len(slots)):
        params.append(["output", j]); names.append(f"out{j}_ptr")
    for i, node in enumerate(kernel.inputs):
        t = node_type(node)
        for d in range(len(t.shape) if isinstance(t, TensorType) else 0):
            if sympy.Symbol(f"in{i}_st{d}", integer=True, nonnegative=True) in body.strides:
                params.append(["stride", i, d]); names.append(f"in{i}_st{d}")
    bound = bindings(kernel)
    plain = sorted({s.name for s in body.sizes})
    needed = set(plain)
    outputs = []
    for s in slots:
        shape = [sympy.sympify(d) for d in s.type.shape]
        needed |= {x.name for d in shape for x in d.free_symbols}
        outputs.append({"dtype": DTYPE_NAMES[s.type.dtype], "shape": [to_code(d, host=True) for d in shape],
                        "group": s.group, "component": s.component, "device": s.type.device})
    for expr in sizes.values():
        needed |= {x.name for x in sympy.sympify(expr).free_symbols}
    for s in needed - set(bound):
        if s in body.graph_symbols:  # bound by the caller from the graph's inputs
            bound[s] = [[s, None, None]]
    missing = sorted(s for s in needed if s not in bound)
    if missing:
        raise Unsupported(f"size symbols {', '.join(missing)} are not sizes of the kernel's or the graph's inputs")
    for s in plain:
        params.append(["symbol", s]); names.append(s)
    for name, expr in sizes.items():
        params.append(["size", to_code(expr, host=True)]); names.append(name)
    signature = ", ".join(names + [f"{c}: tl.constexpr" for c in constexprs + ["INDEX_DTYPE"]])
    fn = kernel.name
    legend = [f"# in{i}: %{n.name} {node_type(n)}" for i, n in enumerate(kernel.inputs)]
    legend += [f"# out{j}: %{s.node.name}{'' if s.component is None else f'[{s.component}]'} {s.type}"
               for j, s in enumerate(slots)]
    helpers = "".join("\n\n" + source for source in body.helpers.values())
    source = (HEADER + helpers + "\n\n@triton.jit\n" + f"def {fn}({signature}):\n"
              + "\n".join("    " + h for h in legend + header) + "\n" + "\n".join(body.lines) + "\n")
    return KernelSpec(fn, kind, source, params, outputs, groups,
                      [b for s in sorted(needed) for b in bound[s]],
                      {k: to_code(v, host=True) for k, v in sizes.items()}, inputs, dict(covers or {}),
                      dict(switch or {}))


def dtype_of(name: str) -> torch.dtype:
    return DTYPES_BY_NAME[name]
