"""Shared test setup.

- Makes tests/ importable (model_zoo, opinfo_expected_failures).
- `compiled_zoo`: each model of tests/model_zoo.py compiled with fastc and run once per session
  (inference or a training step), with eager's results, fastc's reports, the debug dump and every
  graph fastc ran with its inputs. tests/test_models.py and tests/test_text_roundtrip_models.py
  share it, so a model is compiled once however many files look at it.
- Prints the table of model errors that tests/test_models.py records (also written to
  /tmp/fastc_model_errors.txt).
- Kernels' choices are measured (FASTC_TUNING=measure) unless a test asks otherwise: most tests
  check what measuring records, and the learned cost model's choices depend on the machine the
  shipped model fits. Its own tests (tests/costmodel/) and tests/test_shipped_cost_model.py run the
  default policy ("auto": the shipped model where it fits this machine) on the zoo's models.
"""
import copy
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import torch._dynamo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("FASTC_TUNING", "measure")

ERRORS_FILE = "/tmp/fastc_model_errors.txt"


@dataclass
class CompiledRun:
    name: str
    training: bool
    model: torch.nn.Module          # the compiled model's module (gradients land here)
    reference: torch.nn.Module      # its deepcopy, run eagerly
    actual: torch.Tensor            # main output through fastc
    expected: torch.Tensor          # main output in eager
    again: torch.Tensor | None      # inference: a second call of the compiled model
    reports: list                   # fastc.reports() of this compilation
    debug_dir: Path
    graphs: list[dict] = field(default_factory=list)  # {"gm", "inputs"} per graph fastc ran


def _recording_boxed(original, graphs: list):
    """Wraps fastc's last step (the boxed callable around the optimized GraphModule): records the
    graph that runs and the inputs of its first call (frozen inputs left out, as the graph sees them)."""
    def recording(gm, frozen, *args, **kwargs):
        run = original(gm, frozen, *args, **kwargs)
        entry = {"gm": gm, "inputs": None}
        graphs.append(entry)
        frozen_set = set(frozen)

        def wrapped(boxed_args):
            if entry["inputs"] is None:
                entry["inputs"] = [a.detach().clone() if isinstance(a, torch.Tensor) else a
                                   for i, a in enumerate(boxed_args) if i not in frozen_set]
            return run(boxed_args)

        wrapped._boxed_call = True
        wrapped.graph_module = gm
        return wrapped
    return recording


def compile_and_run(name: str, training: bool, debug_dir: Path) -> CompiledRun:
    import fastc
    import fastc.graph_compiler
    from fastc_eval.zoo import build, main_output

    torch._dynamo.reset()
    graphs: list[dict] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fastc.graph_compiler, "_boxed", _recording_boxed(fastc.graph_compiler._boxed, graphs))
        model, inputs = build(name)
        model.train(training)
        reference = copy.deepcopy(model)
        before = len(fastc.reports())
        compiled = torch.compile(model, backend="fastc",
                                 options={"on_error": "raise", "debug_dir": str(debug_dir)})
        if training:
            actual = main_output(compiled(**inputs))
            expected = main_output(reference(**inputs))
            weights = torch.randn(expected.shape, generator=torch.Generator().manual_seed(1))
            (actual * weights).sum().backward()
            (expected * weights).sum().backward()
            again = None
        else:
            with torch.no_grad():
                expected = main_output(reference(**inputs))
                actual = main_output(compiled(**inputs))
                again = main_output(compiled(**inputs))  # the cached graph, a second time
        reports = fastc.reports()[before:]
    torch._dynamo.reset()
    return CompiledRun(name, training, model, reference, actual, expected, again, reports, debug_dir, graphs)


@pytest.fixture(scope="session")
def compiled_zoo(tmp_path_factory):
    """compiled_zoo(name, training) -> CompiledRun, computed once per session."""
    cache: dict = {}

    def get(name: str, training: bool) -> CompiledRun:
        key = (name, training)
        if key not in cache:
            debug_dir = tmp_path_factory.mktemp(f"{name}-{'training' if training else 'inference'}")
            cache[key] = compile_and_run(name, training, debug_dir)
        return cache[key]

    return get


def pytest_terminal_summary(terminalreporter):
    model_zoo = sys.modules.get("model_zoo")
    rows = getattr(model_zoo, "ERROR_TABLE", None)
    if not rows:
        return
    lines = [f"{'model':<22} {'check':<18} {'max abs error':>14}"]
    lines += [f"{model:<22} {check:<18} {err:>14.3e}" for model, check, err in rows]
    terminalreporter.write_sep("-", "fastc vs eager, max abs error per model")
    for line in lines:
        terminalreporter.write_line(line)
    try:
        with open(ERRORS_FILE, "w") as f:
            f.write("\n".join(lines) + "\n")
    except OSError:
        pass
