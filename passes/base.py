"""What a pass is, the registry of passes by name, and pipeline specs (`a,b{opt=1}`).

A pass is a frozen dataclass: its fields are its options, `name` is its kebab-case name, and its
docstring says what it rewrites and when that is legal. `run(gm, ctx)` rewrites the graph in place
and returns how many rewrites it made; `ctx` (a PassContext) carries what the pass may need from
outside the graph (target, example and calibration inputs, the accuracy budget, the choices).
"""
from __future__ import annotations

import dataclasses
import re
import typing
from typing import ClassVar

import torch.fx as fx

from .context import PassContext

PASSES: dict[str, type["Pass"]] = {}


@dataclasses.dataclass(frozen=True)
class Pass:
    name: ClassVar[str] = ""
    # Exact passes keep outputs equal to the input graph's within float tolerance; lossy ones
    # run only when the user names them, and the pass manager measures and reports their cost.
    exact: ClassVar[bool] = True

    def run(self, gm: fx.GraphModule, ctx: PassContext) -> int:
        raise NotImplementedError

    def spec(self) -> str:
        """This pass with its options, as `fastc-opt -p` takes it."""
        opts = [f"{f.name}={_format(getattr(self, f.name))}" for f in dataclasses.fields(self)
                if getattr(self, f.name) != f.default]
        return self.name + ("{" + ",".join(opts) + "}" if opts else "")


def register(cls: type[Pass]) -> type[Pass]:
    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", cls.name):
        raise ValueError(f"pass name {cls.name!r} is not kebab-case")
    if cls.name in PASSES:
        raise ValueError(f"two passes are named {cls.name!r}")
    PASSES[cls.name] = cls
    return cls


def _format(v) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def _convert(pass_name: str, field: dataclasses.Field, hint, text: str):
    def bad(valid):
        return ValueError(f"pass {pass_name!r}: option {field.name}={text!r} is not valid "
                          f"(expected {valid})")
    if hint is bool:
        if text.lower() in ("true", "1"):
            return True
        if text.lower() in ("false", "0"):
            return False
        raise bad("true or false")
    if hint is int:
        try:
            return int(text)
        except ValueError:
            raise bad("an integer") from None
    if hint is float:
        try:
            return float(text)
        except ValueError:
            raise bad("a number") from None
    if typing.get_origin(hint) is typing.Literal:
        if text not in typing.get_args(hint):
            raise bad("one of " + ", ".join(typing.get_args(hint)))
        return text
    return text


def make_pass(name: str, options: dict[str, str] | None = None) -> Pass:
    """The pass called `name`, its options given as text (as on a command line)."""
    if name not in PASSES:
        raise ValueError(f"unknown pass {name!r} (valid: {', '.join(sorted(PASSES))})")
    cls = PASSES[name]
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, text in (options or {}).items():
        if key not in fields:
            valid = ", ".join(fields) or "none"
            raise ValueError(f"pass {name!r} has no option {key!r} (valid: {valid})")
        kwargs[key] = _convert(name, fields[key], hints[key], text)
    return cls(**kwargs)


_SPEC_ITEM = re.compile(r"\s*([a-z0-9-]+)\s*(\{([^}]*)\})?\s*(,|$)")


def parse_pipeline(spec: str) -> list[Pass]:
    """`dead-code,fold-constants{max_bytes=1024}` -> pass instances, in order."""
    passes, pos = [], 0
    spec = spec.strip()
    while pos < len(spec):
        m = _SPEC_ITEM.match(spec, pos)
        if not m:
            raise ValueError(f"malformed pass pipeline at column {pos + 1}: {spec[pos:]!r} "
                             "(expected name or name{opt=value,...}, separated by commas)")
        options = {}
        for item in filter(None, (m.group(3) or "").split(",")):
            key, eq, value = item.partition("=")
            if not eq:
                raise ValueError(f"pass {m.group(1)!r}: option {item.strip()!r} needs '=value'")
            options[key.strip()] = value.strip()
        passes.append(make_pass(m.group(1), options))
        pos = m.end()
    return passes
