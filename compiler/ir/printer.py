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

An op may end with attributes from its node's metadata, in this order:

    %y: f32[4, 8] = aten.addmm.default(%b, %x, %t) {kernel = 1, kind = "matmul", scope = "layers.0.attn.q_proj" : "Linear"}

`kernel` and `kind` are the kernel plan (kernel_plan.py). `scope` is the module the op came from:
the innermost entry of `node.meta["nn_module_stack"]` (set by Dynamo; on backward ops, the
forward module's, from `fwd_nn_module_stack`), as a dotted path from the compiled module
(`L['self'].layers[0]` prints as `layers.0`) and the module's class name. See `node_scope`.
"""
from __future__ import annotations

import json
import math
import re

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
    scope = node_scope(node)
    if scope is not None:
        path, cls = scope
        items.append(f"scope = {_value(path)}" + (f" : {_value(cls)}" if cls is not None else ""))
    return " {" + ", ".join(items) + "}" if items else ""


# -- scopes: the module an op came from --------------------------------------------------------
# Where the module stack is: Dynamo's, then aot_autograd's copy of the forward op's on backward ops.
SCOPE_KEYS = ("nn_module_stack", "fwd_nn_module_stack")
_LOCAL_ROOT = re.compile(r"""^L\[(['"])[^'"]*\1\]""")  # L['self'], L['fn']: the compiled module
_GLOBAL_ROOT = re.compile(r"""^G\[(['"])([^'"]*)\1\]""")  # G['model']: a global module, keeps its name
_SUBSCRIPT = re.compile(r"""(?:\._modules)?\[(?:(['"])(.*?)\1|(-?\d+))\]""")


def scope_path(path: str) -> str:
    """A module path as Dynamo writes it, as a dotted path from the compiled module:
    `L['self'].layers[0].attn` -> `layers.0.attn`, `G['model'].head` -> `model.head`,
    `L['fn']` -> `` (the compiled module itself). A clean path is returned unchanged."""
    path = _LOCAL_ROOT.sub("", path.strip())
    path = _GLOBAL_ROOT.sub(lambda m: m.group(2), path)
    path = _SUBSCRIPT.sub(lambda m: "." + (m.group(2) if m.group(1) else m.group(3)), path)
    return path.strip(".")


def node_scope(node: fx.Node) -> tuple[str, str | None] | None:
    """(dotted module path, module class name or None) of the innermost module `node` came from,
    or None for an op of the compiled module itself or one without a module stack."""
    for key in SCOPE_KEYS:
        stack = node.meta.get(key)
        if stack:
            break
    else:
        return None
    entry = list(stack.values())[-1] if isinstance(stack, dict) else None
    if not isinstance(entry, tuple) or len(entry) != 2 or not isinstance(entry[0], str):
        return None  # not Dynamo's form, {key: (path, class)}
    path, cls = entry
    path = scope_path(path)
    if not path:
        return None
    if cls is not None and not isinstance(cls, str):
        cls = getattr(cls, "__name__", None) or str(cls)
    elif isinstance(cls, str):
        cls = cls.rsplit(".", 1)[-1]  # "torch.nn.modules.linear.Linear", as torch.export writes it
    return path, cls


def set_scope(node: fx.Node, path: str, cls: str | None = None):
    """Sets the module `node` came from (what the parser does with `scope = "path" : "Class"`), as a
    one-entry module stack in Dynamo's form, {key: (path, class)}, the class given by name."""
    node.meta["nn_module_stack"] = {path: (path, cls)}


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
