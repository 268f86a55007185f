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
    #: Lossy passes to run, in order, as a pipeline spec ("shift-add{bits=3}"): nothing lossy
    #: runs unless named here.
    lossy: str | None = None
    #: Input tuples as the model takes them (or a callable returning an iterable of them): the
    #: first half fits the lossy passes' statistics, the rest measures what they cost.
    calibration: object = field(default=None, compare=False)
    #: The largest loss of `accuracy_metric` the lossy passes may cause; each keeps the largest
    #: set of its rewrites that fits. 0 keeps the graph exact; None: no limit, the cost reported.
    accuracy_budget: float | None = None
    #: "agreement" (top-1 agreement with the original outputs), "relative-error" (relative L2
    #: error of the outputs), or a callable metric(model) -> float, higher is better.
    accuracy_metric: object = field(default="agreement", compare=False)
    #: The preferences object of this compilation (a fastc.costmodel.Choices: which fusions,
    #: schedules, ATen or generated code). None: the process-wide one
    #: (fastc.costmodel.set_default_choices), else what kernel_choice and mode ask for.
    choices: object = None
    #: How kernels' choices are made (fastc.costmodel.default): "auto" (the learned cost model
    #: where one exists for this machine, else measuring as kernel_choice and mode say),
    #: "model", "measure" or "heuristic". FASTC_TUNING sets the default.
    tuning: str = "auto"
    #: A cost model file (`fastc costmodel train --out FILE`) to use instead of the shipped one.
    cost_model: str | None = None

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


def lossy_options(options: dict) -> dict:
    """`lossy`, `calibration`, `accuracy_budget`, `accuracy_metric`, checked together."""
    out: dict = {}
    if not any(options.get(k) is not None for k in ("lossy", "calibration", "accuracy_budget", "accuracy_metric")):
        return out
    from fastc.passes import METRICS, PASSES, parse_pipeline
    budget = options.get("accuracy_budget")
    if budget is not None:
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 <= budget < float("inf"):
            raise _fail("accuracy_budget", budget, "a finite number >= 0 (the largest loss of the "
                        "accuracy metric), or None")
        out["accuracy_budget"] = float(budget)
    metric = options.get("accuracy_metric")
    if metric is not None:
        if not callable(metric) and metric not in METRICS:
            raise _fail("accuracy_metric", metric, ", ".join(f"{m!r}" for m in METRICS)
                        + " or a callable metric(model) -> float (higher is better)")
        out["accuracy_metric"] = metric
    spec = options.get("lossy")
    if spec is not None:
        if not isinstance(spec, str):
            raise _fail("lossy", spec, "a pipeline spec of lossy passes such as 'shift-add{bits=3}'")
        try:
            passes = parse_pipeline(spec)
        except ValueError as e:
            raise ValueError(f"fastc option lossy={spec!r}: {e}") from None
        exact = [p.name for p in passes if p.exact]
        if exact:
            valid = ", ".join(sorted(n for n, c in PASSES.items() if not c.exact and not n.startswith("test-only")))
            raise ValueError(f"fastc option lossy={spec!r}: {exact[0]!r} is not a lossy pass "
                             f"(lossy passes: {valid}; exact ones go in 'passes')")
        if passes:
            out["lossy"] = spec
    named = "lossy" in out
    for key in ("calibration", "accuracy_budget", "accuracy_metric"):
        if options.get(key) is not None and not named:
            raise ValueError(f"fastc option {key} is given but no lossy pass is named in option 'lossy' "
                             f"(only lossy passes use {key})")
    calibration = options.get("calibration")
    if named and calibration is None:
        raise ValueError(f"fastc option lossy={spec!r} needs option 'calibration': a list of input tuples "
                         "as the model takes them, e.g. [(x1,), (x2,)] (some fit the passes, the rest "
                         "measure their cost)")
    if calibration is not None:
        if not callable(calibration):
            check_calibration(calibration)
        out["calibration"] = calibration
    return out


def check_calibration(calibration) -> list[tuple]:
    """The calibration set as a list of tuples; a clear error naming the option otherwise."""
    if isinstance(calibration, (str, bytes)) or not hasattr(calibration, "__iter__"):
        raise ValueError(f"fastc option calibration={_short(calibration)} is not valid (valid: a list of input "
                         "tuples such as [(x1,), (x2,)], or a callable returning an iterable of them)")
    items = list(calibration)
    if len(items) < 2:
        raise ValueError(f"fastc option calibration has {len(items)} input tuple(s): it needs at least 2 "
                         "(the first half fits the lossy passes, the rest measures their cost)")
    for i, item in enumerate(items):
        if not isinstance(item, (tuple, list)):
            raise ValueError(f"fastc option calibration[{i}] is a {type(item).__name__}, not a tuple of "
                             "inputs: write [(x1,), (x2,)] for a model taking one input")
    return [tuple(item) for item in items]


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
    tuning = options.get("tuning", os.environ.get("FASTC_TUNING", "auto"))
    from fastc.costmodel.default import TUNING
    if tuning not in TUNING:
        raise _fail("tuning", tuning, ", ".join(TUNING))
    kwargs["tuning"] = tuning
    if options.get("cost_model") is not None:
        path = options["cost_model"]
        if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
            raise _fail("cost_model", path, "the path of an existing cost model file (fastc costmodel train --out FILE)")
        kwargs["cost_model"] = os.fspath(path)
    on_error = options.get("on_error", os.environ.get("FASTC_ON_ERROR", "fallback"))
    if on_error not in ON_ERROR:
        raise _fail("on_error", on_error, ", ".join(ON_ERROR))
    kwargs["on_error"] = on_error
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
            passes = parse_pipeline(options["passes"])
        except ValueError as e:
            raise ValueError(f"fastc option passes={options['passes']!r}: {e}") from None
        lossy = [p.name for p in passes if not p.exact]
        if lossy:
            raise ValueError(f"fastc option passes={options['passes']!r}: {lossy[0]!r} is lossy; name lossy "
                             "passes in the 'lossy' option (with 'calibration' and 'accuracy_budget')")
        kwargs["passes"] = options["passes"]
    kwargs.update(lossy_options(options))
    if "disable" in options:
        from fastc.passes import PASSES
        disable = options["disable"]
        if isinstance(disable, str):
            disable = tuple(filter(None, (d.strip() for d in disable.split(","))))
        if not isinstance(disable, (list, tuple)) or any(d not in PASSES for d in disable):
            raise _fail("disable", options["disable"], "a list of pass names from: " + ", ".join(sorted(PASSES)))
        kwargs["disable"] = tuple(disable)
    return Options(**kwargs)
