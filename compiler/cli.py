"""The `fastc` command line: `fastc demo`, `fastc explain`, `fastc opt` (also `fastc-opt`),
`fastc costmodel` (costmodel_scripts/), ...

    fastc opt -p remove-noops,fold-constants{max_new_elements=64} graph.fx

A mistake in what was asked for (an unknown model, a file that is missing or not text, IR that
does not parse, a bad pass pipeline, a count below 1) is one line on stderr, `fastc opt: error:
...` or `FILE:LINE:COLUMN: error: ...`, and a non-zero exit status: 2 for a bad command line, 1
for bad input. Only a bug in fastc itself ends in a traceback.
"""
from __future__ import annotations

import argparse
import sys

from .command_input import CommandError, load_constants, parse_error_line, read_text


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer of at least 0."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer of at least {minimum}, got {text!r}")
    return value


def _run(prog: str, func, args) -> int:
    try:
        return func(args)
    except CommandError as e:
        print(f"{e.location or prog}: error: {e}", file=sys.stderr)
        return e.status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastc", description="fastc: a torch.compile backend.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="compile the bundled models, check against eager, time them")
    demo.add_argument("--model", choices=_demo_models(), action="append",
                      help="which bundled model (default: all)")
    demo.add_argument("--runs", type=positive_int, default=20, help="timed runs per model (at least 1)")
    demo.set_defaults(func=_demo)

    explain = sub.add_parser("explain", help="what fastc does to a bundled model or an .fx file")
    explain.add_argument("model", nargs="?", default="cnn",
                         help="a model of the zoo (" + ", ".join(_zoo_models()) + ") or an .fx file")
    explain.add_argument("--graph", action="store_true", help="also print each final graph")
    explain.add_argument("--target", default="auto", choices=("auto", "cpu", "aten", "triton", "triton-interpret"),
                         help="what runs the kernels (triton-interpret needs TRITON_INTERPRET=1; "
                         "with --profile, auto is cpu)")
    explain.add_argument("--batch", type=positive_int, metavar="N",
                         help="the model's batch size (default: its own)")
    explain.add_argument("--profile", action="store_true",
                         help="time the compiled model per kernel, per ATen op and between them, "
                         "under torch.profiler, against eager")
    explain.add_argument("--roofline", action="store_true",
                         help="each kernel and kind of ATen op against this machine's measured roofline: "
                         "FLOPs, bytes, intensity, time, fraction of the roof (profiles like --profile)")
    explain.add_argument("--plot", metavar="PNG", help="with --roofline: also write the roofline plot there")
    explain.add_argument("--calls", type=positive_int, default=20, metavar="N",
                         help="with --profile: profiled (and per round timed) calls (default 20)")
    explain.add_argument("--top", type=non_negative_int, default=0, metavar="N",
                         help="with --profile: rows per table, slowest first (default 0: all)")
    explain.add_argument("--lossy", metavar="SPEC", help="lossy passes to run (e.g. 'shift-add{bits=3}'), "
                         "calibrated on inputs like the model's (bundled models only)")
    explain.add_argument("--accuracy-budget", type=float, metavar="LOSS", help="with --lossy: the budget")
    explain.add_argument("--accuracy-metric", default=None, choices=("agreement", "relative-error"),
                         help="with --lossy: the metric (default agreement)")
    explain.set_defaults(func=_explain)

    opt = sub.add_parser("opt", help="run passes over a graph in text form and print the result")
    _opt_arguments(opt)
    opt.set_defaults(func=_opt)

    from .costmodel_scripts.cli import register as register_costmodel
    register_costmodel(sub)  # fastc costmodel collect | train | eval | show

    for register in _plugins():
        register(sub)

    args = parser.parse_args(argv)
    return _run(sub.choices[args.command].prog, args.func, args)


def opt_main(argv: list[str] | None = None) -> int:
    """`fastc-opt`: the same as `fastc opt`."""
    parser = argparse.ArgumentParser(prog="fastc-opt", description="Run fastc passes over IR text.")
    _opt_arguments(parser)
    return _run(parser.prog, _opt, parser.parse_args(argv))


def _plugins():
    """Subcommands that live with the parts they drive."""
    registers = []
    try:
        from fastc_eval.cli import register
        registers.append(register)
    except ImportError:
        pass
    return registers


def _demo_models():
    from fastc_eval.zoo import DEMO
    return DEMO


def _zoo_models():
    from fastc_eval.zoo import MODELS
    return list(MODELS)


# -- fastc opt ------------------------------------------------------------------------------------
def _opt_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("file", nargs="?", default="-", help="an .fx file, or - for standard input")
    parser.add_argument("-p", "--passes", default="", help="pass pipeline, e.g. 'dead-code,cse'")
    parser.add_argument("--constants", help="safetensors file that `const @name` refers to "
                        "(default: FILE with .safetensors, or constants.safetensors beside FILE)")
    parser.add_argument("--inline-limit", type=non_negative_int, default=16,
                        help="print constants of at most this many elements inline")
    parser.add_argument("--split-input-file", action="store_true",
                        help="treat '# -----' lines as separators between independent graphs")
    parser.add_argument("--list", action="store_true", help="list the passes and their options")


def _opt(args) -> int:
    from fastc.ir import ParseError, parse_graph, print_graph
    from fastc.passes import PASSES, PassContext, parse_pipeline

    from .pass_manager import run_passes

    if args.list:
        for name, cls in sorted(PASSES.items()):
            import dataclasses
            fields = ", ".join(f"{f.name}={f.default}" for f in dataclasses.fields(cls))
            doc = (cls.__doc__ or "").strip().splitlines()[0]
            print(f"{name}{'{' + fields + '}' if fields else ''}\n    {doc}")
        return 0
    try:
        passes = parse_pipeline(args.passes)
    except ValueError as e:
        raise CommandError(str(e), status=2) from None
    text = read_text(args.file)
    constants = load_constants(args.file, args.constants)
    chunks = _split(text) if args.split_input_file else [(0, text)]
    status, outputs = 0, []
    for first_line, chunk in chunks:
        try:
            gm = parse_graph(chunk, constants)
        except ParseError as e:
            print(parse_error_line(args.file, e, first_line), file=sys.stderr)
            status = 1
            continue
        # Every pass here was named on the command line: lossy ones included.
        run_passes(gm, passes, ctx=PassContext(requested=frozenset(p.name for p in passes)))
        outputs.append(print_graph(gm, inline_limit=args.inline_limit))
    sys.stdout.write("# -----\n".join(outputs))
    return status


def _split(text: str) -> list[tuple[int, str]]:
    """Chunks between '# -----' lines, with the line number each starts after."""
    chunks, current, start = [], [], 0
    for i, line in enumerate(text.splitlines(keepends=True)):
        if line.strip() == "# -----":
            chunks.append((start, "".join(current)))
            current, start = [], i + 1
        else:
            current.append(line)
    chunks.append((start, "".join(current)))
    return chunks


# -- fastc demo / explain ---------------------------------------------------------------------------
def _demo(args) -> int:
    from .demo import run_demo
    _check_options({})
    return run_demo(args.model or list(_demo_models()), runs=args.runs)


def _explain(args) -> int:
    from .explain import explain
    lossy = {k: v for k, v in (("lossy", args.lossy), ("accuracy_budget", args.accuracy_budget),
                               ("accuracy_metric", args.accuracy_metric)) if v is not None}
    if args.plot and not args.roofline:
        raise CommandError("--plot goes with --roofline", status=2)
    if args.roofline:
        from .explain import explain_roofline
        if lossy or args.graph or args.profile:
            raise CommandError("--roofline takes no --lossy, --graph or --profile", status=2)
        target = "cpu" if args.target == "auto" else args.target
        _check_options({"target": target})
        return explain_roofline(args.model, codegen_target=target, batch=args.batch, calls=args.calls,
                                top=args.top, plot=args.plot)
    if args.profile:
        from .explain import explain_profile
        if lossy or args.graph:
            raise CommandError("--profile takes no --lossy or --graph", status=2)
        target = "cpu" if args.target == "auto" else args.target
        _check_options({"target": target})
        return explain_profile(args.model, codegen_target=target, batch=args.batch, calls=args.calls, top=args.top)
    if lossy:
        lossy["calibration"] = [(None,), (None,)]  # stands in for the model's inputs (explain.py)
    _check_options({"target": args.target, **lossy})
    return explain(args.model, show_graph=args.graph, codegen_target=args.target, lossy=lossy, batch=args.batch)


def _check_options(options: dict) -> None:
    """Options the command will compile with, and FASTC_* settings in the environment, checked
    before any compiling (inside torch.compile a bad one would surface as a compiler failure)."""
    from .options import make_options
    try:
        make_options(options)
    except ValueError as e:
        raise CommandError(str(e), status=2) from None


if __name__ == "__main__":
    # `python -m fastc.cli`: run the imported module's main, so that this file's classes
    # (CommandError) are the ones the other modules import, not copies in __main__.
    from fastc.cli import main as _main
    sys.exit(_main())
