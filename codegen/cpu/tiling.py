"""Stage 07-loops: a native CPU schedule's loop transformations, with MLIR's transform dialect.

A schedule (fastc.ir.schedule.Schedule: `tile_outer`, `tile_inner`, `vectorize`, `unroll`) says
how each *root* of a build's linalg is looped. A root is a linalg op whose result leaves the
linalg graph (an output of the kernel, directly or through a reshape). Per root, last first:

1. tile-and-fuse (`transform.structured.fuse`): the root's parallel loops are tiled (every one
   but the innermost at 1, the last of those at `tile_outer`; the innermost at `tile_inner`; 0
   leaves a loop whole; reduction loops are never tiled) and every linalg producer it reads is
   fused into the tile loops. A layer norm becomes one loop over rows whose temporaries hold one
   row, instead of a dozen loop nests over whole-tensor temporaries. A producer that several
   roots read is recomputed in each root's loops (tile-and-fuse clones it);
2. unroll (`transform.loop.unroll`) of the innermost tile loop, `unroll` times;
3. vectorize (`transform.structured.vectorize`) the linalg ops inside the tile loops: static
   tile shapes become vector ops, reductions `vector.multi_reduction`, which the lowering turns
   into LLVM vector code instead of hoping LLVM's loop vectorizer finds it.

Before the transforms the module is prepared: callees inlined (fast_math's helpers become plain
arithmetic that vectorizes), unit dimensions folded and elementwise chains fused, so a root's
producers are linalg ops it can fuse through. Every schedule computes the same values (the same
ops on the same elements; a recomputed producer gives the same bits); a schedule the transforms
cannot apply to a kernel fails its build, and that candidate is not legal for that kernel.
"""
from __future__ import annotations

import re

ROOT_ATTR = "fastc.root"

# Inlining, unit-dimension folding and elementwise fusion before the transforms (the lowering
# pipeline inlines and fuses again: a no-op after this).
PREPARE = ("builtin.module(inline, symbol-dce, func.func(linalg-fold-unit-extent-dims, "
           "linalg-fuse-elementwise-ops, canonicalize, cse))")
CLEANUP = "builtin.module(canonicalize, cse)"


def schedule_loops(module, schedule):
    """Stage 07-loops: `module` (combined, linalg on tensors) with `schedule`'s loop transformations
    applied to every root (in place). A schedule without loop transformations leaves it as it is."""
    if not schedule.loops:
        return module
    from torch_mlir import ir, passmanager
    context = module.context
    if schedule.vectorize and has_bools(module):
        raise NotVectorizable("a kernel with bool tensors is not vectorized: LLVM stores a "
                              "vector<N x i1> as N bits, torch (and scalar code) a byte per bool")
    passmanager.PassManager.parse(PREPARE, context).run(module.operation)
    roots = find_roots(module)
    with context, ir.Location.unknown(context):
        lines = []
        for i, root in reversed(list(enumerate(roots))):
            root.attributes[f"{ROOT_ATTR}{i}"] = ir.UnitAttr.get()
            lines += root_transform(i, iterators(root), schedule)
        run_transform(module, lines)
        for op in walk(module.operation):
            for name in [_name(a) for a in op.attributes]:
                if name.startswith(ROOT_ATTR):
                    del op.attributes[name]
        if schedule.vectorize:
            largest = largest_static_op(module)
            if largest > VECTOR_ELEMENTS_MAX:
                raise NotVectorizable(f"a linalg op of {largest} elements is left after tiling: vectors "
                                      f"of more than {VECTOR_ELEMENTS_MAX} elements are not made")
            run_transform(module, vectorize_lines())
    passmanager.PassManager.parse(CLEANUP, context).run(module.operation)
    return module


# The most elements a vectorized op may have: an op of static shape left whole by the tiling (a
# producer several roots read, a long reduction) would become vectors that large, and LLVM's
# time and memory grow with them (a ConvNeXt kernel's ran this machine out of memory).
VECTOR_ELEMENTS_MAX = 4096


def run_transform(module, lines: list[str]) -> None:
    """Runs the transform-dialect `lines` (a named sequence's body over %root) on `module`."""
    if not lines:
        return
    from torch_mlir import ir, passmanager
    module.operation.attributes["transform.with_named_sequence"] = ir.UnitAttr.get()
    script = ir.Module.parse(transform_script(lines))
    sequence = list(script.body.operations)[0]
    sequence.detach_from_parent()
    module.body.append(sequence)
    try:
        passmanager.PassManager.parse("builtin.module(transform-interpreter)").run(module.operation)
    finally:
        sequence.erase()
        del module.operation.attributes["transform.with_named_sequence"]


def largest_static_op(module) -> int:
    """The most elements of any operand or result of static shape of a linalg op in `module`:
    the largest vector vectorizing it makes (ops of dynamic shape are not vectorized)."""
    from torch_mlir import ir
    largest = 0
    for op in walk(module.operation):
        if not op.operation.name.startswith("linalg.") or not op.operation.regions:
            continue
        for value in [*op.operation.operands, *op.operation.results]:
            try:
                t = ir.RankedTensorType(value.type)
            except ValueError:  # a scalar
                continue
            if t.has_static_shape:
                largest = max(largest, _product(t.shape))
    return largest


def _product(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


class NotVectorizable(Exception):
    """A vectorizing schedule refused for a kernel (it is no candidate there)."""


def has_bools(module) -> bool:
    """Whether `module` has a tensor or memref of i1 (torch.bool) anywhere: an argument, a
    result or a temporary."""
    return re.search(r"(tensor|memref)<([0-9?]+x)*i1[,>]", str(module)) is not None


def tile_sizes(iterator_types: list[str], schedule) -> list[int]:
    """The tile size of each loop of a root whose loops are `iterator_types` ("parallel" or
    "reduction"), under `schedule`; 0: the loop is not tiled."""
    parallel = [i for i, t in enumerate(iterator_types) if t == "parallel"]
    sizes = [0] * len(iterator_types)
    if not parallel:
        return sizes
    *outer, inner = parallel
    if schedule.tile_outer:
        for i in outer:
            sizes[i] = 1
        if outer:
            sizes[outer[-1]] = schedule.tile_outer
    sizes[inner] = schedule.tile_inner
    return sizes


def root_transform(i: int, iterator_types: list[str], schedule) -> list[str]:
    """The transform-dialect lines for root number `i`."""
    sizes = tile_sizes(iterator_types, schedule)
    loops = sum(1 for s in sizes if s)
    if not loops:
        return []
    any_op = "!transform.any_op"
    lines = [f"%r{i} = transform.structured.match attributes{{{ROOT_ATTR}{i}}} in %root : ({any_op}) -> {any_op}",
             f"%t{i}, %l{i}:{loops} = transform.structured.fuse %r{i} tile_sizes {sizes} "
             f": ({any_op}) -> ({', '.join([any_op] * (loops + 1))})"]
    if schedule.unroll > 1:
        lines.append(f"transform.loop.unroll %l{i}#{loops - 1} {{factor = {schedule.unroll} : i64}} : {any_op}")
    return lines


def vectorize_lines() -> list[str]:
    """Vectorizes every linalg op of static shape (all of them once every loop is tiled; one
    that cannot be, say a tile at the edge of a dimension the tile does not divide, stays
    scalar), then lowers n-D vector ops to the 1-D ones LLVM takes."""
    any_op = "!transform.any_op"
    return [f"%funcs = transform.structured.match ops{{[\"func.func\"]}} in %root : ({any_op}) -> {any_op}",
            f"%vectorized = transform.structured.vectorize_children_and_apply_patterns %funcs : ({any_op}) -> {any_op}",
            "transform.apply_patterns to %vectorized {",
            "  transform.apply_patterns.vector.reorder_multi_reduction_dims lowering_strategy = \"innerreduction\"",
            "  transform.apply_patterns.vector.multi_reduction_flattening lowering_strategy = \"innerreduction\"",
            "  transform.apply_patterns.vector.multi_reduction_unrolling lowering_strategy = \"innerreduction\"",
            "  transform.apply_patterns.vector.cast_away_vector_leading_one_dim",
            "  transform.apply_patterns.vector.lower_shape_cast",
            "  transform.apply_patterns.vector.transfer_permutation_patterns",
            "  transform.apply_patterns.vector.lower_transfer max_transfer_rank = 1",
            # (no canonicalization patterns in this set: with the reduction flattening they
            # rewrite each other forever, the canonicalize pass runs after, on its own; nor
            # lower_broadcast: with cast_away_vector_leading_one_dim it grew a (1, 32) layer
            # norm's IR until the process ran out of memory)
            f"}} : {any_op}"]


def transform_script(lines: list[str]) -> str:
    body = "\n".join("    " + line for line in lines)
    return ("module attributes {transform.with_named_sequence} {\n"
            "  transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {\n"
            f"{body}\n    transform.yield\n  }}\n}}\n")


def find_roots(module) -> list:
    """The linalg ops of `module` (not inside another linalg op) whose results are used by
    something other than a linalg op: a kernel's outputs, directly or through a reshape."""
    roots = []
    for op in walk(module.operation):
        name = op.operation.name
        if not name.startswith("linalg.") or name == "linalg.fill" or not op.operation.regions:
            continue
        if any(not use.owner.operation.name.startswith("linalg.") for r in op.results for use in r.uses):
            roots.append(op)
    return roots


def iterators(op) -> list[str]:
    """"parallel" or "reduction" per loop of a linalg op."""
    from torch_mlir import ir
    if "iterator_types" not in op.attributes:
        return []
    return ["parallel" if "parallel" in str(a) else "reduction" for a in ir.ArrayAttr(op.attributes["iterator_types"])]


def _name(attribute) -> str:
    """An attribute's name, whichever of (name, NamedAttribute) iterating attributes yields."""
    return attribute if isinstance(attribute, str) else attribute.name


def walk(op):
    """Every operation nested in `op`, outer before inner, but for what is inside a linalg op
    (its body's scalar arithmetic: never a root, and most of a module's operations)."""
    for region in op.regions:
        for block in region.blocks:
            for inner in block.operations:
                yield inner
                if not inner.operation.name.startswith("linalg."):
                    yield from walk(inner.operation)
