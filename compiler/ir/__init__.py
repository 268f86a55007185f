"""fastc's graph IR: a torch.fx GraphModule of ATen ops, with a type on every node and a text form.

- `types`: the type of a node (tensor dtype/shape/device, scalar, tuple), shapes as sympy expressions.
- `printer` / `parser`: the round-trippable text form (`.fx` files, lit tests, debug dumps);
  `node_scope`: the module an op came from (`scope = "layers.0.attn" : "Attention"` in text).
- `constants`: frozen weights and other constants held by a graph.
- `targets`: naming op targets in text and resolving names back to callables.
"""
from .constants import add_constant, constant_value, copy_graph, is_constant
from .parser import ParseError, parse_graph
from .printer import node_scope, print_graph, scope_path, set_scope
from .types import ScalarType, TensorType, TupleType, node_type

__all__ = [
    "ParseError", "ScalarType", "TensorType", "TupleType", "add_constant", "constant_value",
    "copy_graph", "is_constant", "node_scope", "node_type", "parse_graph", "print_graph", "scope_path", "set_scope",
]
