"""What a lowering may depend on besides the kernel itself (part of the disk cache key)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LowerOptions:
    interpret: bool = False                  # for Triton's interpreter: work around its bf16 rounding and dot
    persistent_max: int | None = None        # rows up to this length reduce in one pass (schedule's default)
    graph_symbols: frozenset = frozenset()   # size symbols the caller binds from the graph's inputs

    @staticmethod
    def of(options: dict | None) -> "LowerOptions":
        options = options or {}
        return LowerOptions(options.get("target") == "triton-interpret", options.get("persistent_max"),
                            frozenset(options.get("graph_symbols", ())))
