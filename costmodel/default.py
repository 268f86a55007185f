"""Which choices object a compilation uses. As Inductor's `V.set_choices_handler`,
`set_default_choices(obj)` sets one for the whole process; the `choices` option of
`torch.compile(..., options={...})` sets one for one compilation (it wins). Otherwise the
`tuning` option picks the policy:

- "auto" (the default): the learned cost model where one for this target, machine and feature
  version exists (the shipped one, costmodel/models/, or the `cost_model` option's file), else
  "measure" where the compilation measures today (the native CPU target, or max-autotune), else
  "heuristic";
- "model": the learned model (ModelChoices); a model that is missing, damaged or trained for
  another machine is refused with a warning saying why, and the heuristic is used;
- "measure": every candidate measured at a kernel's first call (MeasuredChoices);
- "heuristic": rules only, nothing measured (HeuristicChoices).
"""
from __future__ import annotations

import functools
import logging
import os
import warnings
from pathlib import Path

from .choices import Choices
from .heuristic import HeuristicChoices
from .measured import MeasuredChoices

log = logging.getLogger("fastc")

TUNING = ("auto", "model", "measure", "heuristic")
MODELS_DIR = Path(__file__).resolve().parent / "models"

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
    when the compilation asks for measuring, HeuristicChoices otherwise."""
    if _default is not None:
        return _default
    return MeasuredChoices() if measure else _HEURISTIC


def default_model_path(target: str) -> Path:
    """Where the model shipped for `target` lives (it may not exist)."""
    return MODELS_DIR / f"{target}.json"


def compile_choices(given: Choices | None = None, *, target: str, kernel_choice: str = "measure",
                    autotune: bool = False, tuning: str | None = None, model_path: str | None = None) -> Choices:
    """The choices object of one compilation: `given` (the `choices` option) when there is one,
    else the process-wide one, else what `tuning` (default: $FASTC_TUNING, else "auto") asks for
    (module docstring)."""
    tuning = tuning or os.environ.get("FASTC_TUNING") or "auto"
    if given is not None:
        return given
    if _default is not None:
        return _default
    if tuning not in TUNING:
        raise ValueError(f"fastc option tuning={tuning!r} is not valid (valid: {', '.join(TUNING)})")
    measuring = autotune or (target == "cpu" and kernel_choice == "measure")
    if tuning == "heuristic":
        return _HEURISTIC
    if tuning == "measure":
        return MeasuredChoices()
    if target == "cpu" and (tuning == "model" or measuring):
        model, why = load_model(str(model_path or default_model_path(target)), target)
        if model is not None:
            from .model_choices import ModelChoices
            return ModelChoices(model, autotune=autotune)
        if tuning == "model":
            _warn_once(f"fastc: the cost model is not used ({why}); kernels run under the heuristic's choices")
            return _HEURISTIC
        log.debug("fastc: no cost model (%s); measuring", why)
    return MeasuredChoices() if measuring else _HEURISTIC


def load_model(path: str, target: str):
    """(the model at `path` checked for `target` and this machine, None) or (None, why not)."""
    if not os.path.exists(path):
        return None, f"no model file {path}"
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError as e:
        return None, f"{path}: {e}"
    return _load(path, target, stamp)


@functools.lru_cache(maxsize=8)
def _load(path: str, target: str, stamp: int):
    from .learned import CostModel, CostModelError
    from .machine import machine_id
    from .mlir_features import FEATURE_VERSION
    try:
        model = CostModel.load(path)
        model.check(target, machine_id(), FEATURE_VERSION)
    except CostModelError as e:
        return None, str(e)
    model.path = path
    return model, ""


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    warnings.warn(message, stacklevel=3)
