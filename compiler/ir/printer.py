"""The text form of a graph.

    graph @forward(%x: f32[s0, 8]) {
      %w: f32[16, 8] = const @w
      %b: f32[16] = const dense<[0.0, ...]>
      %t: f32[8, 16] = aten.permute.default(%w, [1, 0])
      %y: f32[s0, 16] = aten.addmm.default(%b, %x, %t)
      return (%y)
    }

Constants print inline (`dense<[...]>`, flattened, row-major) up to `inline_limit` elements and by
reference (`@name`, resolved through a constants mapping when parsed) above it.
"""
from __future__ import annotations

import json
import math

import torch
import torch.fx as fx

from .constants import constant_value
from .targets import target_name
from .types import node_type


def print_graph(gm: fx.GraphModule, name: str | None = None, inline_limit: int = 16) -> str:
    name = name or gm.meta.get("name", "forward")
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    params = ", ".join(f"%{n.name}: {_type(n)}" for n in placeholders)
    lines = [f"graph @{name}({params}) {{"]
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            continue
        if node.op == "output":
            lines.append(f"  return {_value(node.args[0])}")
        elif node.op == "get_attr":
            lines.append(f"  %{node.name}: {_type(node)} = const {_constant(node, inline_limit)}")
        elif node.op == "call_function":
            args = [_value(a) for a in node.args]
            args += [f"{k}={_value(v)}" for k, v in node.kwargs.items()]
            lines.append(f"  %{node.name}: {_type(node)} = {target_name(node.target)}({', '.join(args)})"
                         + _attributes(node))
        else:
            raise ValueError(f"cannot print node {node.name}: op {node.op!r} (only call_function, "
                             "get_attr, placeholder and output are part of the fastc IR)")
    lines.append("}")
    return "\n".join(lines) + "\n"


# Node metadata the text form carries, as `{key = value}` after an op: key in text -> meta key.
ATTRIBUTES = {"kernel": "kernel", "kind": "kernel_kind"}


def _attributes(node) -> str:
    items = [f"{key} = {_value(node.meta[meta])}" for key, meta in ATTRIBUTES.items() if meta in node.meta]
    return " {" + ", ".join(items) + "}" if items else ""


def _type(node) -> str:
    t = node_type(node)
    return "?" if t is None else str(t)


def _constant(node, inline_limit: int) -> str:
    value = constant_value(node)
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"constant {node.target} is a {type(value).__name__}, not a tensor")
    if value.numel() > inline_limit:
        return f"@{node.target}"
    items = value.detach().cpu().reshape(-1).tolist()
    return "dense<[" + ", ".join(_scalar(v) for v in items) + "]>"


def _scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, complex):
        raise ValueError("complex scalars have no text form")
    raise TypeError(type(v))


def _value(v) -> str:
    if isinstance(v, fx.Node):
        return f"%{v.name}"
    if v is None:
        return "none"
    if isinstance(v, (bool, int, float)):
        return _scalar(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, tuple):
        inner = ", ".join(_value(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if isinstance(v, torch.dtype):
        return str(v)  # torch.float32
    if isinstance(v, (torch.layout, torch.memory_format)):
        return str(v)  # torch.strided, torch.contiguous_format
    if isinstance(v, torch.device):
        return f'device("{v}")'
    if isinstance(v, slice):
        return f"slice({_value(v.start)}, {_value(v.stop)}, {_value(v.step)})"
    raise ValueError(f"no text form for argument {v!r} of type {type(v).__name__}")
