"""fastc's options: every key a user may pass in `torch.compile(..., options={...})`, validated.

    ValueError: unknown fastc option 'fuse_max' (valid: debug_dir, disable, ...)
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

MODES = ("default", "max-autotune", "max-autotune-no-cudagraphs", "reduce-overhead")
TARGETS = ("auto", "cpu", "aten", "triton", "triton-interpret")
KERNEL_CHOICES = ("measure", "generated")
ON_ERROR = ("fallback", "raise")


@dataclass(frozen=True)
class Options:
    #: Directory for debug dumps (captured graph, graph after each pass, report). Also FASTC_DEBUG.
    debug_dir: str | None = None
    #: Freeze parameters and buffers into graph constants when no gradient is needed.
    freeze: bool = True
    #: Pipeline spec replacing the default one, e.g. "dead-code,cse" (see `fastc opt --list`).
    passes: str | None = None
    #: Names of passes to leave out of the pipeline.
    disable: tuple[str, ...] = ()
    #: After each pass, run the graph on the example inputs and compare with the captured graph.
    verify: bool = False
    #: What to do when a fastc stage fails on a graph: run the graph as captured ("fallback",
    #: with a warning) or raise. FASTC_ON_ERROR sets the default.
    on_error: str = "fallback"
    #: What runs the optimised graph: "cpu" (native code through torch-mlir and LLVM), "aten"
    #: (each op an ATen call), "triton" (generated Triton kernels, CUDA), "triton-interpret"
    #: (generated Triton through Triton's interpreter on CPU: for testing, slow), or "auto"
    #: (triton for CUDA graphs, cpu otherwise).
    target: str = "auto"
    #: Native CPU kernels: "measure" runs each kernel as ATen or generated code, whichever is
    #: faster at its first call; "generated" always runs the generated code. FASTC_KERNEL_CHOICE.
    kernel_choice: str = "measure"
    #: Compilation mode, from torch.compile's `mode` or this option (torch.compile refuses both
    #: `mode` and `options`): "max-autotune" measures candidate schedules of each generated kernel.
    mode: str = "default"
    #: The largest relative output error lossy passes (named in `passes`) may add, measured
    #: against the captured graph on the example inputs; a pass that exceeds it is undone.
    #: None: lossy passes run unchecked, their cost still measured and reported.
    accuracy_budget: float | None = None
    #: The preferences object of this compilation (a fastc.costmodel.Choices: which fusions,
    #: schedules, ATen or generated code). None: the process-wide one
    #: (fastc.costmodel.set_default_choices), else what kernel_choice and mode ask for.
    choices: object = None

    @staticmethod
    def keys() -> list[str]:
        return [f.name for f in dataclasses.fields(Options)]


def _fail(key, value, valid) -> ValueError:
    return ValueError(f"fastc option {key}={value!r} is not valid (valid: {valid})")


def _require_cuda() -> None:
    """target="triton" compiles for a CUDA device: without one it is an error here, before
    anything (triton included) is imported."""
    import torch
    if not torch.cuda.is_available():
        raise ValueError("fastc option target='triton' needs a CUDA device, and torch sees none "
                         "(torch.cuda.is_available() is False); valid here: "
                         + ", ".join(t for t in TARGETS if t != "triton"))


def make_options(options: dict | None = None, mode: str | None = None) -> Options:
    """Validates a user's options dict and mode; raises ValueError naming key, value and choices."""
    options = dict(options or {})
    valid_keys = Options.keys()
    for key in options:
        if key not in valid_keys:
            raise ValueError(f"unknown fastc option {key!r} (valid: {', '.join(valid_keys)})")
    # torch.compile takes `mode` or `options`, not both: `options={"mode": ...}` gives both.
    if mode is not None and "mode" in options and options["mode"] != mode:
        raise ValueError(f"fastc mode given twice: mode={mode!r} and options['mode']={options['mode']!r}")
    mode = mode or options.get("mode") or "default"
    if mode not in MODES:
        raise ValueError(f"fastc mode {mode!r} is not valid (valid: {', '.join(MODES)})")
    kwargs: dict = {"mode": mode}
    # "" means no dump, as FASTC_DEBUG="" does (not the current directory).
    debug_dir = options.get("debug_dir", os.environ.get("FASTC_DEBUG") or None)
    if debug_dir is not None and not isinstance(debug_dir, (str, os.PathLike)):
        raise _fail("debug_dir", debug_dir, "a directory path, or None or '' for no dump")
    kwargs["debug_dir"] = (os.fspath(debug_dir) or None) if debug_dir is not None else None
    for key in ("freeze", "verify"):
        if key in options:
            if not isinstance(options[key], bool):
                raise _fail(key, options[key], "True or False")
            kwargs[key] = options[key]
    target = options.get("target", "auto")
    if target not in TARGETS:
        raise _fail("target", target, ", ".join(TARGETS))
    if target == "triton":
        _require_cuda()
    kwargs["target"] = target
    choice = options.get("kernel_choice", os.environ.get("FASTC_KERNEL_CHOICE", "measure"))
    if choice not in KERNEL_CHOICES:
        raise _fail("kernel_choice", choice, ", ".join(KERNEL_CHOICES))
    kwargs["kernel_choice"] = choice
    on_error = options.get("on_error", os.environ.get("FASTC_ON_ERROR", "fallback"))
    if on_error not in ON_ERROR:
        raise _fail("on_error", on_error, ", ".join(ON_ERROR))
    kwargs["on_error"] = on_error
    if "accuracy_budget" in options and options["accuracy_budget"] is not None:
        budget = options["accuracy_budget"]
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 <= budget < float("inf"):
            raise _fail("accuracy_budget", budget, "a finite number >= 0 (relative output error), or None")
        kwargs["accuracy_budget"] = float(budget)
    if options.get("choices") is not None:
        from fastc.costmodel import Choices
        if not isinstance(options["choices"], Choices):
            raise _fail("choices", options["choices"], "a fastc.costmodel.Choices such as HeuristicChoices() "
                        "or MeasuredChoices(), or None")
        kwargs["choices"] = options["choices"]
    if "passes" in options:
        from fastc.passes import parse_pipeline
        if not isinstance(options["passes"], str):
            raise _fail("passes", options["passes"], "a pipeline spec string such as 'dead-code,cse'")
        try:
            parse_pipeline(options["passes"])
        except ValueError as e:
            raise ValueError(f"fastc option passes={options['passes']!r}: {e}") from None
        kwargs["passes"] = options["passes"]
    if "disable" in options:
        from fastc.passes import PASSES
        disable = options["disable"]
        if isinstance(disable, str):
            disable = tuple(filter(None, (d.strip() for d in disable.split(","))))
        if not isinstance(disable, (list, tuple)) or any(d not in PASSES for d in disable):
            raise _fail("disable", options["disable"], "a list of pass names from: " + ", ".join(sorted(PASSES)))
        kwargs["disable"] = tuple(disable)
    return Options(**kwargs)
