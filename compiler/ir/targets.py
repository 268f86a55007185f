"""Names of op targets in the text form, and back.

ATen and other registered ops print as `namespace.op.overload` (`aten.add.Tensor`); Python
callables (operator.getitem, torch.sym_max, ...) print by module and name, with
`operator.getitem` shortened to `getitem`.
"""
from __future__ import annotations

import importlib
import operator

import torch

_MODULE_ALIASES = {"_operator": "operator", "builtins": "builtins"}


def target_name(target) -> str:
    if isinstance(target, (torch._ops.OpOverload, torch._ops.HigherOrderOperator)):
        return str(target) if isinstance(target, torch._ops.OpOverload) else f"higher_order.{target.name()}"
    if target is operator.getitem:
        return "getitem"
    module = _MODULE_ALIASES.get(target.__module__, target.__module__)
    return f"{module}.{target.__qualname__}"


def _register_fastc_ops() -> None:
    """fastc's own ops (torch.ops.fastc.*) are registered by the kernels that implement them."""
    import fastc.kernels.bcq  # noqa: F401  (registers fastc.bcq_linear)
    import fastc.kernels.semi_structured  # noqa: F401  (registers fastc.linear_2to4)
    import fastc.kernels.onednn  # noqa: F401  (registers fastc.conv2d_act, fastc.linear_act)
    import fastc.kernels.blocks  # noqa: F401  (registers fastc.convfirst_block, mbconv_block, mlp_block)


def resolve_target(name: str):
    """The callable a printed target name stands for; raises LookupError if there is none."""
    if name == "getitem":
        return operator.getitem
    parts = name.split(".")
    if parts[0] == "fastc" and len(parts) == 3:
        _register_fastc_ops()
    if parts[0] == "higher_order" and len(parts) == 2:
        return getattr(torch.ops.higher_order, parts[1])
    if len(parts) == 3 and hasattr(torch.ops, parts[0]) and parts[0] not in ("torch", "operator", "math"):
        namespace = getattr(torch.ops, parts[0])
        try:
            packet = getattr(namespace, parts[1])
            return getattr(packet, parts[2])
        except (AttributeError, RuntimeError) as e:
            raise LookupError(f"no op {name}") from e
    if len(parts) == 2 and parts[0] in ("aten", "prims"):
        return resolve_target(name + ".default")  # `aten.neg` means its default overload
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError:
            break
        if callable(obj):
            return obj
    raise LookupError(f"no callable named {name}")
