"""What a pass is handed besides the graph: the shared state of one compilation.

xDSL calls its passes `apply(ctx, op)`; fastc's are `run(gm, ctx)`. Everything a pass may need
from outside the graph reaches it here, never through globals or options smuggled into fields:

- `target`: what runs the result ("cpu", "aten", "triton", "triton-interpret").
- `example_inputs`: the graph's real inputs at compile time (frozen ones left out), when known.
- `calibration_inputs`: batches of inputs a lossy pass may fit its statistics to (part of the
  user's `calibration`; without it, none).
- `held_out_inputs`: the rest of the calibration batches: what a lossy pass's cost is measured on.
- `accuracy`: the metric and the budget lossy passes are held to (metrics.py); None: lossy
  passes run unchecked (fastc-opt).
- `choices`: the preferences object (fusion, schedules, ATen or generated code); None means
  each pass's own default.
- `requested`: the passes the user named; a lossy pass runs only when it is one of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .metrics import AccuracyCheck


@dataclass
class PassContext:
    target: str = "aten"
    example_inputs: list | None = None
    calibration_inputs: list[list] | None = None
    held_out_inputs: list[list] | None = None
    accuracy: AccuracyCheck | None = None
    choices: object = None
    requested: frozenset[str] = field(default_factory=frozenset)

    def inputs_for_fitting(self) -> list[list]:
        """Input batches a lossy pass fits its statistics to: the calibration batches, else the
        example."""
        if self.calibration_inputs:
            return list(self.calibration_inputs)
        return [self.example_inputs] if self.example_inputs is not None else []

    def inputs_for_measuring(self) -> list[list]:
        """Input batches to check exact passes on (`verify`): the held-out batches, else the
        example."""
        if self.held_out_inputs:
            return list(self.held_out_inputs)
        return [self.example_inputs] if self.example_inputs is not None else []
