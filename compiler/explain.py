"""`fastc explain`: what fastc does to a bundled model or to a graph in text form."""
from __future__ import annotations

import glob
import os
import sys
import tempfile

import torch

from fastc_eval import zoo
from .options import make_options
from .report import REPORTS, GraphReport, count_ops, op_histogram


def explain(target: str, show_graph: bool = False, codegen_target: str = "auto", lossy: dict | None = None,
            batch: int | None = None) -> int:
    """`target`: a model of the zoo (fastc_eval.zoo.MODELS), else a file of IR text (an .fx file).
    `lossy`: the lossy options (lossy, accuracy_budget, accuracy_metric), calibrated on inputs like
    the model's (six batches, other seeds). `batch`: the model's batch size (default its own)."""
    from .command_input import CommandError

    if target not in zoo.MODELS:
        if lossy:
            raise CommandError("--lossy needs a bundled model (" + ", ".join(zoo.MODELS) + ")", status=2)
        if target.endswith(".fx") or os.path.exists(target):
            return _explain_file(target, show_graph)
        raise _unknown_model(target)
    model, inputs = zoo.build(target, batch=batch)
    model.eval()
    options = {"debug_dir": None, "target": codegen_target}
    if lossy:
        calibration = [tuple(zoo.build(target, seed=seed, batch=batch)[1].values()) for seed in range(1, 7)]
        options.update(lossy, calibration=calibration)
        torch.manual_seed(0)
        model, inputs = zoo.build(target, batch=batch)
        model.eval()
    torch._dynamo.reset()
    first = len(REPORTS)
    with tempfile.TemporaryDirectory() as dump, torch.no_grad():
        torch.compile(model, backend="fastc", options={**options, "debug_dir": dump})(**inputs)
        for report in REPORTS[first:]:
            print(report.text())
            if show_graph:
                pattern = os.path.join(dump, f"graph_{report.graph_id:03d}_*", "*.fx")
                last = sorted(glob.glob(pattern))[-1]
                print(open(last).read())
    return 0


def explain_profile(target: str, codegen_target: str = "cpu", batch: int | None = None, calls: int = 20,
                    top: int = 0) -> int:
    """`fastc explain --profile`: time per kernel, per ATen op and between them (profiling.py)."""
    from .profiling import profile_model
    if target not in zoo.MODELS:
        raise _unknown_model(target, "--profile needs a model of the zoo")
    print(profile_model(target, target=codegen_target, batch=batch, calls=calls).text(top=top))
    return 0


def explain_roofline(target: str, codegen_target: str = "cpu", batch: int | None = None, calls: int = 20,
                     top: int = 0, plot: str | None = None) -> int:
    """`fastc explain --roofline`: each kernel and kind of ATen op against the machine's measured
    roofline (roofline.py), and optionally the plot (PNG)."""
    from .roofline import roofline_model, roofline_plot, roofline_text
    if target not in zoo.MODELS:
        raise _unknown_model(target, "--roofline needs a model of the zoo")
    rows, peak, profile = roofline_model(target, target=codegen_target, batch=batch, calls=calls)
    print(f"roofline of {target} (batch {batch if batch is not None else 'default'}, target {codegen_target}): "
          f"fastc {profile.fastc_ms:.3f} ms per forward, eager {profile.eager_ms:.3f} ms")
    print(roofline_text(rows, peak, top=top))
    if plot:
        print(f"plot: {roofline_plot(rows, peak, plot, title=f'{target}, fastc target {codegen_target}')}")
    return 0


def _unknown_model(target: str, what: str | None = None):
    from .command_input import CommandError
    if what is not None:
        return CommandError(f"unknown model {target!r}: {what} ({', '.join(zoo.MODELS)})", status=2)
    return CommandError(f"unknown model {target!r}: neither a model of the zoo ({', '.join(zoo.MODELS)}) "
                        "nor an .fx file", status=2)


def _explain_file(path: str, show_graph: bool) -> int:
    from fastc.ir import ParseError, parse_graph, print_graph

    from .command_input import load_constants, parse_error_line, read_text
    from .pass_manager import run_pipeline

    text = read_text(path)
    try:
        gm = parse_graph(text, load_constants(path, None))
    except ParseError as e:
        print(parse_error_line(path, e), file=sys.stderr)
        return 1
    report = GraphReport(0, "file", nodes_captured=count_ops(gm))
    run_pipeline(gm, make_options({}), report)
    report.nodes_final, report.ops_final = count_ops(gm), op_histogram(gm)
    print(report.text())
    if show_graph:
        print(print_graph(gm))
    return 0
