"""Which choices object a compilation uses. As Inductor's `V.set_choices_handler`,
`set_default_choices(obj)` sets one for the whole process; the `choices` option of
`torch.compile(..., options={...})` sets one for one compilation (it wins)."""
from __future__ import annotations

from .choices import Choices
from .heuristic import HeuristicChoices
from .measured import MeasuredChoices

_HEURISTIC = HeuristicChoices()
_default: Choices | None = None


def set_default_choices(choices: Choices | None) -> Choices | None:
    """Makes `choices` the process-wide choices object (None: fastc's own again); returns the
    one it replaces."""
    global _default
    if choices is not None and not isinstance(choices, Choices):
        raise TypeError(f"expected a fastc.costmodel.Choices, got {type(choices).__name__}")
    previous, _default = _default, choices
    return previous


def default_choices(*, measure: bool = False) -> Choices:
    """The process-wide choices object when one was set; otherwise fastc's own: MeasuredChoices
    when the compilation asks for measuring (max-autotune, or kernel_choice="measure" on the
    native CPU target), HeuristicChoices otherwise."""
    if _default is not None:
        return _default
    return MeasuredChoices() if measure else _HEURISTIC


def compile_choices(given: Choices | None = None, *, target: str, kernel_choice: str = "measure",
                    autotune: bool = False) -> Choices:
    """The choices object of one compilation: `given` (the `choices` option) when there is one,
    else `default_choices`, measuring when the compilation asks for it: with max-autotune, or
    with kernel_choice="measure" on the native CPU target."""
    if given is not None:
        return given
    return default_choices(measure=autotune or (target == "cpu" and kernel_choice == "measure"))
