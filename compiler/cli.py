"""The `fastc` command line: `fastc demo`, `fastc explain`, `fastc opt` (also `fastc-opt`), ...

    fastc opt -p remove-noops,fold-constants{max_new_elements=64} graph.fx
"""
from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastc", description="fastc: a torch.compile backend.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="compile the bundled models, check against eager, time them")
    demo.add_argument("--model", choices=_demo_models(), action="append",
                      help="which bundled model (default: all)")
    demo.add_argument("--runs", type=int, default=20, help="timed runs per model")
    demo.set_defaults(func=_demo)

    explain = sub.add_parser("explain", help="what fastc does to a bundled model or an .fx file")
    explain.add_argument("model", nargs="?", default="cnn",
                         help="a bundled model name (" + ", ".join(_demo_models()) + ") or an .fx file")
    explain.add_argument("--graph", action="store_true", help="also print each final graph")
    explain.add_argument("--target", default="auto", choices=("auto", "cpu", "aten", "triton", "triton-interpret"),
                         help="what runs the kernels (triton-interpret needs TRITON_INTERPRET=1)")
    explain.set_defaults(func=_explain)

    opt = sub.add_parser("opt", help="run passes over a graph in text form and print the result")
    _opt_arguments(opt)
    opt.set_defaults(func=_opt)

    for register in _plugins():
        register(sub)

    args = parser.parse_args(argv)
    return args.func(args)


def opt_main(argv: list[str] | None = None) -> int:
    """`fastc-opt`: the same as `fastc opt`."""
    parser = argparse.ArgumentParser(prog="fastc-opt", description="Run fastc passes over IR text.")
    _opt_arguments(parser)
    return _opt(parser.parse_args(argv))


def _plugins():
    """Subcommands that live with the parts they drive."""
    registers = []
    try:
        from fastc.reference.cli import register
        registers.append(register)
    except ImportError:
        pass
    return registers


def _demo_models():
    from .demo_models import MODELS
    return MODELS


# -- fastc opt ------------------------------------------------------------------------------------
def _opt_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("file", nargs="?", default="-", help="an .fx file, or - for standard input")
    parser.add_argument("-p", "--passes", default="", help="pass pipeline, e.g. 'dead-code,cse'")
    parser.add_argument("--constants", help="safetensors file that `const @name` refers to "
                        "(default: FILE with .safetensors, or constants.safetensors beside FILE)")
    parser.add_argument("--inline-limit", type=int, default=16,
                        help="print constants of at most this many elements inline")
    parser.add_argument("--split-input-file", action="store_true",
                        help="treat '# -----' lines as separators between independent graphs")
    parser.add_argument("--list", action="store_true", help="list the passes and their options")


def _opt(args) -> int:
    from fastc.ir import ParseError, parse_graph, print_graph
    from fastc.passes import PASSES, parse_pipeline

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
        print(f"fastc opt: {e}", file=sys.stderr)
        return 2
    text = sys.stdin.read() if args.file == "-" else open(args.file).read()
    constants = _load_constants(args.file, args.constants)
    chunks = _split(text) if args.split_input_file else [(0, text)]
    status, outputs = 0, []
    for first_line, chunk in chunks:
        try:
            gm = parse_graph(chunk, constants)
        except ParseError as e:
            line = e.line + first_line
            print(f"{args.file}:{line}:{e.column}: error: {str(e).split(': ', 1)[1]}", file=sys.stderr)
            status = 1
            continue
        run_passes(gm, passes)
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


def _load_constants(path: str, explicit: str | None) -> dict:
    from safetensors.torch import load_file
    candidates = [explicit] if explicit else []
    if path != "-" and not explicit:
        candidates += [os.path.splitext(path)[0] + ".safetensors",
                       os.path.join(os.path.dirname(path) or ".", "constants.safetensors")]
    for c in candidates:
        if c and os.path.exists(c):
            return load_file(c)
    if explicit:
        raise SystemExit(f"fastc opt: constants file {explicit} does not exist")
    return {}


# -- fastc demo / explain ---------------------------------------------------------------------------
def _demo(args) -> int:
    from .demo import run_demo
    return run_demo(args.model or list(_demo_models()), runs=args.runs)


def _explain(args) -> int:
    from .explain import explain
    return explain(args.model, show_graph=args.graph, codegen_target=args.target)


if __name__ == "__main__":
    sys.exit(main())
