"""Numbers describing a native CPU kernel's MLIR, for the learned cost model.

The native CPU target lowers each planned kernel to linalg on tensors; a schedule may then tile
and fuse it (scf.for / scf.forall loops over tensor.extract_slice tiles), vectorize it
(vector.transfer_read/write, arithmetic on vector<...>, vector.multi_reduction) and unroll it
(codegen/cpu/tiling.py). This file turns such a module into a fixed set of named numbers:

- `module_features(module)`: what the module executes. Arithmetic is counted *dynamically*: an op
  counts once per time it runs (the product of its enclosing loops' trip counts, times the
  iteration domain of the linalg op whose body holds it), times its lanes when it works on
  vectors; a call counts its callee's ops at the call's count. Plus loops, linalg ops (fused into
  loops or not), bytes of the kernel's arguments and of what its ops touch, temporaries, vectors.
- `candidate_features(module, schedule, kernel, machine, is_aten)`: those, plus the schedule's
  fields, the kernel's graph-level features (fastc.costmodel.features.KernelFeatures), the
  machine's (fastc.costmodel.machine.fingerprint) and a few numbers derived from them together.

Every name is in `FEATURES` and documented in docs/costmodel-features.md; `FEATURE_VERSION`
changes whenever a feature's meaning does. Values are floats: module features are always finite
(0 when there is nothing of the kind); a candidate feature is NaN when what it describes was not
given (no schedule, no kernel, a size the kernel does not know). Sizes MLIR leaves dynamic count as
`DEFAULT_EXTENT` and are counted in `dynamic_extents`. The same text always gives the same dict.
"""
from __future__ import annotations

import math
import numbers
from collections import Counter

from torch_mlir import ir
from torch_mlir._mlir_libs._mlirDialectsLinalg import get_indexing_maps

from .machine import fingerprint

FEATURE_VERSION = 1

# What an extent MLIR does not know (a dynamic size or loop bound) counts as.
DEFAULT_EXTENT = 32

ARITH_KINDS = ("add", "mul", "div", "fma", "transcendental", "compare", "minmax", "cast", "int", "other")

_OPS_OF_KIND = {
    "add": ("arith.addf", "arith.subf"),
    "mul": ("arith.mulf",),
    "div": ("arith.divf", "arith.remf"),
    "fma": ("math.fma", "vector.fma", "vector.outerproduct", "vector.contract"),
    "transcendental": tuple(f"math.{n}" for n in (
        "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "tanh", "tan", "sin", "cos", "sincos",
        "atan", "atan2", "asin", "acos", "sinh", "cosh", "asinh", "acosh", "atanh", "erf", "erfc",
        "rsqrt", "sqrt", "cbrt", "powf", "fpowi", "ipowi")),
    "compare": ("arith.cmpf", "arith.cmpi", "arith.select"),
    "minmax": ("arith.maximumf", "arith.minimumf", "arith.maxnumf", "arith.minnumf", "arith.maxsi",
               "arith.minsi", "arith.maxui", "arith.minui"),
    "cast": ("arith.extf", "arith.truncf", "arith.sitofp", "arith.uitofp", "arith.fptosi", "arith.fptoui",
             "arith.index_cast", "arith.index_castui", "arith.bitcast", "arith.extsi", "arith.extui",
             "arith.trunci"),
    "int": ("arith.addi", "arith.subi", "arith.muli", "arith.divsi", "arith.divui", "arith.ceildivsi",
            "arith.ceildivui", "arith.floordivsi", "arith.remsi", "arith.remui", "arith.andi", "arith.ori",
            "arith.xori", "arith.shli", "arith.shrsi", "arith.shrui", "arith.addui_extended",
            "arith.mulsi_extended", "arith.mului_extended", "math.absi", "math.ctlz", "math.cttz",
            "math.ctpop"),
}
_KIND_OF = {name: kind for kind, names in _OPS_OF_KIND.items() for name in names}

# vector.reduction / vector.multi_reduction: the `kind` of the combining op -> its arithmetic kind.
_REDUCTION_KIND = {"add": "add", "mul": "mul", "and": "int", "or": "int", "xor": "int",
                   "minimumf": "minmax", "maximumf": "minmax", "minnumf": "minmax", "maxnumf": "minmax",
                   "minsi": "minmax", "maxsi": "minmax", "minui": "minmax", "maxui": "minmax"}

# Ops that compute nothing at run time (their regions, if any, are still walked).
_FREE = {"arith.constant", "ub.poison", "linalg.yield", "linalg.index", "scf.yield", "scf.condition",
         "scf.forall.in_parallel", "func.return", "affine.yield", "scf.reduce", "scf.reduce.return"}
_VECTOR_READS = {"vector.transfer_read", "vector.load", "vector.maskedload", "vector.gather",
                 "vector.expandload"}
_VECTOR_WRITES = {"vector.transfer_write", "vector.store", "vector.maskedstore", "vector.scatter",
                  "vector.compressstore"}
_SCALAR_ACCESSES = {"tensor.extract", "tensor.insert", "memref.load", "memref.store", "affine.load",
                    "affine.store"}
_TEMPORARIES = {"tensor.empty", "bufferization.alloc_tensor", "memref.alloc", "memref.alloca"}
_LOOPS = {"scf.for", "scf.forall", "scf.parallel", "scf.while", "affine.for", "affine.parallel"}
_PARALLEL_LOOPS = {"scf.forall", "scf.parallel", "affine.parallel"}
# Where a kernel argument (a memref) is written: op name -> the operand number of its destination.
_WRITE_OPERAND = {"bufferization.materialize_in_destination": 1, "vector.transfer_write": 1,
                  "vector.store": 1, "vector.maskedstore": 1, "memref.store": 1, "memref.copy": 1,
                  "affine.store": 1}

MODULE_FEATURES = (
    # arithmetic, dynamic element operations
    *(f"ops_{k}" for k in ARITH_KINDS), "ops_total", "flops", "dynamic_instructions", "calls",
    # loops
    "loops", "parallel_loops", "loop_nests", "loop_depth_max", "loop_iterations",
    "loop_trip_innermost", "loop_step_innermost", "loop_trip_outermost", "loop_body_ops_innermost",
    # linalg ops
    "linalg_ops", "linalg_ops_in_loops", "linalg_ops_outside_loops", "linalg_parallel_dims",
    "linalg_reduction_dims", "linalg_iterations", "linalg_reduction_iterations", "linalg_domain_max",
    "linalg_reduction_extent_max", "linalg_bytes_read", "linalg_bytes_written",
    "linalg_operand_bytes_max",
    # the kernel's arguments and results
    "arg_inputs", "arg_outputs", "arg_bytes_read", "arg_bytes_written", "arg_bytes",
    "arg_elements_written", "bytes_accessed", "reuse", "arithmetic_intensity",
    # vectors
    "vector_ops", "vectorized_fraction", "vector_lanes_max", "vector_lanes_typical", "vector_bits_max",
    "vector_reductions", "vector_shuffles", "transfer_reads", "transfer_writes", "transfer_bytes",
    # tiles, scalar accesses and temporaries
    "extract_slices", "insert_slices", "slice_bytes", "working_set_max", "scalar_accesses",
    "temp_count", "temp_bytes_total", "temp_bytes_max",
    # IR
    "static_ops", "dynamic_extents",
)

SCHEDULE_FIELDS = (("XBLOCK", 0), ("RBLOCK", 0), ("BLOCK_M", 0), ("BLOCK_N", 0), ("BLOCK_K", 0),
                   ("GROUP_M", 0), ("num_warps", 0), ("num_stages", 0), ("parallel", False), ("tile", 0),
                   ("tile_outer", 0), ("tile_inner", 0), ("vectorize", False), ("unroll", 1))
KERNEL_KINDS = ("pointwise", "reduction", "matmul", "view")

CANDIDATE_FEATURES = (
    "is_aten", *(f"sched_{name}" for name, _ in SCHEDULE_FIELDS),
    *(f"kernel_kind_{k}" for k in KERNEL_KINDS), "kernel_ops", "kernel_bytes_read",
    "kernel_bytes_written", "kernel_numel", "kernel_rnumel",
    "machine_cores", "machine_threads", "machine_avx2", "machine_avx512", "machine_fma",
    "machine_vector_bits", "machine_l1d_bytes", "machine_l2_bytes", "machine_l3_bytes",
    "threads_used", "work_per_thread", "bytes_per_thread", "bytes_per_thread_over_l2",
    "flops_per_thread", "working_set_over_l1", "temp_max_over_l2", "vector_bits_over_machine",
)

FEATURES: tuple[str, ...] = MODULE_FEATURES + CANDIDATE_FEATURES


def module_features(module) -> dict[str, float]:
    """The MODULE_FEATURES of one kernel's module: a torch_mlir `ir.Module` (or Operation), or its
    text (parsed in a fresh context). Its `func.func`s are a body, maybe an entry function calling
    it, maybe private helpers the body calls; those nobody calls are where counting starts."""
    if isinstance(module, str):
        context = ir.Context(load_on_create_dialects=[])  # the parser loads the dialects it meets
        context.allow_unregistered_dialects = True
        module = ir.Module.parse(module, context)
    top = module.operation
    funcs = {}
    for op in _ops_in(top):
        if op.name == "func.func" and op.regions[0].blocks:
            funcs[ir.StringAttr(op.attributes["sym_name"]).value] = op
    walk = _Walk(funcs)
    for op in _entry_functions(top, funcs):
        walk.arguments(op)
        walk.block(op.regions[0].blocks[0], 1.0, 0, True)
    return walk.features()


def candidate_features(module, schedule=None, kernel=None, machine: dict | None = None,
                       is_aten: bool = False) -> dict[str, float]:
    """Every feature of FEATURES for one candidate of a kernel: `module` is its MLIR under the
    candidate (text or ir.Module, or the dict `module_features` made of it; None: unknown, its
    features NaN); `schedule` a fastc.ir.schedule.Schedule (None: the candidate has none, like
    ATen); `kernel` its fastc.costmodel.KernelFeatures at the problem; `machine` a
    `fingerprint()` (default: this machine's); `is_aten`: the candidate runs the kernel's ATen
    ops."""
    out = dict.fromkeys(FEATURES, math.nan)
    if isinstance(module, dict):
        out.update(module)
    elif module is not None:
        out.update(module_features(module))
    out["is_aten"] = float(is_aten)
    if schedule is not None:
        for name, default in SCHEDULE_FIELDS:
            out[f"sched_{name}"] = float(getattr(schedule, name, default))
    if kernel is not None:
        out.update(_kernel_features(kernel))
    out.update(_machine_features(fingerprint() if machine is None else machine))
    out.update(_derived(out, schedule, is_aten))
    return out


# -- walking a module -----------------------------------------------------------------------------

class _Walk:
    """Counts of one module, accumulated op by op; `mult` is how many times an op runs."""

    def __init__(self, funcs: dict):
        self.funcs = funcs
        self.f = Counter()           # additive features
        self.top = Counter()         # max-type features
        self.lanes = Counter()       # lanes of a vector op -> how many times such ops run
        self.counted = set()         # functions whose ops were counted statically
        self.calling = []            # the call stack (a recursive call is not followed)
        self.innermost = None        # (depth, trip, step, body ops) of the first deepest loop
        self.scalar_bytes = 0.0
        self.arg_read, self.arg_written, self.arg_all, self.elements_written = 0.0, 0.0, 0.0, 0.0
        self.inputs, self.outputs = 0, 0

    def block(self, block, mult: float, depth: int, static: bool):
        for op in block.operations:
            self.op(op.operation, mult, depth, static)

    def op(self, op, mult: float, depth: int, static: bool):
        name = op.name
        if name.startswith("transform."):
            return
        if static:
            self.f["static_ops"] += 1
        if name in _LOOPS:
            self.loop(op, mult, depth, static)
        elif name == "func.call":
            self.call(op, mult, depth)
        elif name.startswith("linalg.") and name not in _FREE and get_indexing_maps(op) is not None:
            self.linalg(op, mult, depth, static)
        elif name == "scf.if":
            regions = [r for r in op.regions if r.blocks]
            for region in regions:  # one branch runs: each counts at its share
                self.block(region.blocks[0], mult / len(regions), depth, static)
        else:
            self.leaf(op, name, mult, static)
            for region in op.regions:
                for block in region.blocks:
                    self.block(block, mult, depth, static)

    def leaf(self, op, name: str, mult: float, static: bool):
        """One op's own counts (`op` walks its regions, if it has any, after)."""
        if name in _FREE:
            return
        f = self.f
        dialect = name.split(".", 1)[0]
        lanes, element_bytes = 0, 0
        if dialect in ("arith", "math", "vector"):
            f["dynamic_instructions"] += mult
            lanes, element_bytes = _vector_of(op)
        if lanes:
            f["vector_ops"] += mult
            self.lanes[lanes] += mult
            self.top["vector_lanes_max"] = max(self.top["vector_lanes_max"], lanes)
            self.top["vector_bits_max"] = max(self.top["vector_bits_max"], lanes * 8 * element_bytes)
        kind = _KIND_OF.get(name)
        if kind is not None:
            elements = mult * self.elements_of(op, name, lanes, static)
            f[f"ops_{kind}"] += elements
            if lanes:
                f["vector_elements"] += elements
        elif name in ("vector.reduction", "vector.multi_reduction"):
            kind = _REDUCTION_KIND.get(_enum_text(op.attributes["kind"]), "other")
            f[f"ops_{kind}"] += mult * lanes
            f["vector_elements"] += mult * lanes
            f["vector_reductions"] += mult
        elif name in _VECTOR_READS or name in _VECTOR_WRITES:
            f["transfer_reads" if name in _VECTOR_READS else "transfer_writes"] += mult
            size = lanes * element_bytes
            f["transfer_bytes"] += mult * size
            self.top["working_set_max"] = max(self.top["working_set_max"], size)
        elif dialect == "vector":
            f["vector_shuffles"] += mult
        elif dialect in ("arith", "math"):
            f["ops_other"] += mult * max(lanes, 1)
            if lanes:
                f["vector_elements"] += mult * lanes
        elif name in ("tensor.extract_slice", "memref.subview", "tensor.insert_slice",
                      "tensor.parallel_insert_slice"):
            extract = name in ("tensor.extract_slice", "memref.subview")
            size = self.bytes_of(op.results[0] if extract else op.operands[0], static)
            f["extract_slices" if extract else "insert_slices"] += mult
            f["slice_bytes"] += mult * size
            self.top["working_set_max"] = max(self.top["working_set_max"], size)
        elif name in _SCALAR_ACCESSES:
            f["scalar_accesses"] += mult
            value = op.results[0] if op.results else op.operands[0]
            self.scalar_bytes += mult * _element_bytes(value.type)
        elif name in _TEMPORARIES and static:
            size = self.bytes_of(op.results[0], static)
            f["temp_count"] += 1
            f["temp_bytes_total"] += size
            self.top["temp_bytes_max"] = max(self.top["temp_bytes_max"], size)

    def elements_of(self, op, name: str, lanes: int, static: bool) -> float:
        """Element operations one run of arithmetic op `op` does."""
        if name == "vector.contract":  # its iteration domain, one multiply-add a point
            ranges = self.loop_ranges(op, [m.value for m in op.attributes["indexing_maps"]], static)
            return float(math.prod(ranges))
        return float(max(lanes, 1))

    def call(self, op, mult: float, depth: int):
        self.f["calls"] += mult
        callee = ir.FlatSymbolRefAttr(op.attributes["callee"]).value
        func = self.funcs.get(callee)
        if func is None or callee in self.calling:
            return
        static = callee not in self.counted
        self.counted.add(callee)
        self.calling.append(callee)
        self.block(func.regions[0].blocks[0], mult, depth, static)
        self.calling.pop()

    def loop(self, op, mult: float, depth: int, static: bool):
        trip, step = self.trip_count(op, static)
        f, top = self.f, self.top
        if static:
            f["loops"] += 1
            f["parallel_loops"] += op.name in _PARALLEL_LOOPS
            f["loop_nests"] += depth == 0
            top["loop_depth_max"] = max(top["loop_depth_max"], depth + 1)
        f["loop_iterations"] += mult * trip
        loops_before, innermost_before = f["loops"], self.innermost
        for region in op.regions:  # scf.while: its condition and its body, each every trip
            for block in region.blocks:
                self.block(block, mult * trip, depth + 1, static)
        if not static:
            return
        if f["loops"] == loops_before:  # no loop inside: an innermost loop
            if self.innermost is None or depth + 1 > self.innermost[0]:
                body = op.regions[-1].blocks[0].operations
                self.innermost = (depth + 1, trip, step, sum(o.operation.name not in _FREE for o in body))
        if depth == 0 and self.innermost is not innermost_before:  # this nest holds the deepest loop
            top["loop_trip_outermost"] = trip

    def trip_count(self, op, static: bool) -> tuple[float, float]:
        """(iterations of one run of loop `op`, its innermost dimension's step); unknown bounds
        count as DEFAULT_EXTENT."""
        name = op.name
        if name == "scf.for":
            bounds = [[_int_value(v)] for v in list(op.operands)[:3]]
        elif name in ("scf.forall", "scf.parallel"):
            bounds = _mixed_bounds(op)
        elif name == "affine.for":
            bounds = _affine_for_bounds(op)
        else:  # scf.while, affine.parallel: not known here
            bounds = [[None], [None], [None]]
        trip, step = 1.0, 1.0
        for lower, upper, step_ in zip(*bounds):
            if None in (lower, upper, step_) or step_ <= 0:
                if static:
                    self.f["dynamic_extents"] += 1
                trip, step = trip * DEFAULT_EXTENT, 1.0
            else:
                trip, step = trip * max(0, -(-(upper - lower) // step_)), float(step_)
        return trip, step

    def linalg(self, op, mult: float, depth: int, static: bool):
        """A structured linalg op: its body runs once per point of its iteration domain."""
        maps = [m.value for m in get_indexing_maps(op)]
        ranges = self.loop_ranges(op, maps, static)
        n_inputs = _input_count(op, len(maps))
        if "iterator_types" in op.attributes:
            reduction = ["reduction" in str(a) for a in op.attributes["iterator_types"]]
        else:  # a named op: a loop no output is indexed by is a reduction
            outs = {e.position for m in maps[n_inputs:] for e in m.results
                    if isinstance(e, ir.AffineDimExpr)}
            reduction = [d not in outs for d in range(len(ranges))]
        domain = float(math.prod(ranges))
        f, top = self.f, self.top
        if static:
            f["linalg_ops"] += 1
            f["linalg_ops_in_loops" if depth else "linalg_ops_outside_loops"] += 1
            f["linalg_reduction_dims"] += sum(reduction)
            f["linalg_parallel_dims"] += len(reduction) - sum(reduction)
        f["linalg_iterations"] += mult * domain
        top["linalg_domain_max"] = max(top["linalg_domain_max"], domain)
        if any(reduction):
            f["linalg_reduction_iterations"] += mult * domain
            top["linalg_reduction_extent_max"] = max(
                top["linalg_reduction_extent_max"], math.prod(r for r, red in zip(ranges, reduction) if red))
        body = op.regions[0].blocks[0] if op.regions and op.regions[0].blocks else None
        used = [len(list(a.uses)) > 0 for a in body.arguments] if body is not None else []
        for i, value in enumerate(op.operands):
            if not isinstance(value.type, ir.ShapedType):
                continue
            size = self.bytes_of(value, static)
            top["linalg_operand_bytes_max"] = max(top["linalg_operand_bytes_max"], size)
            top["working_set_max"] = max(top["working_set_max"], size)
            output = i >= n_inputs
            read = used[i] if len(used) == len(maps) else not output
            if read:
                f["linalg_bytes_read"] += mult * size
            if output:
                f["linalg_bytes_written"] += mult * size
        if body is not None:
            self.block(body, mult * domain, depth, static)

    def loop_ranges(self, op, maps: list, static: bool) -> list[int]:
        """The extent of each loop of a structured op (linalg, vector.contract), read off the
        static sizes of the operands its indexing maps index it by."""
        n = maps[0].n_dims if maps else 0
        ranges: list[int | None] = [None] * n
        for value, amap in zip(op.operands, maps):
            shape = self.shape_of(value)
            for pos, expr in enumerate(amap.results):
                if isinstance(expr, ir.AffineDimExpr) and pos < len(shape) and ranges[expr.position] is None:
                    ranges[expr.position] = shape[pos]
        if static:
            self.f["dynamic_extents"] += ranges.count(None)
        return [DEFAULT_EXTENT if r is None else r for r in ranges]

    def shape_of(self, value, depth: int = 0) -> list[int | None]:
        """Sizes of a shaped value; a dynamic size from the op that made it when constants give it
        (an affine.min's constant bound: a tile's full size), or from the value it has the shape of
        (a linalg op's init, a loop's initial value), else None."""
        t = value.type
        if not isinstance(t, ir.ShapedType) or not t.has_rank:
            return []
        shape = list(t.shape)
        dynamic = [i for i in range(len(shape)) if t.is_dynamic_dim(i)]
        if not dynamic:
            return shape
        sizes = _dynamic_size_operands(value, len(shape))
        if sizes is not None:
            for i in dynamic:
                shape[i] = _int_value(sizes[i]) if sizes[i] is not None else None
            return shape
        same = _same_shape(value) if depth < 8 else None
        other = self.shape_of(same, depth + 1) if same is not None else []
        for i in dynamic:
            shape[i] = other[i] if len(other) == len(shape) else None
        return shape

    def bytes_of(self, value, static: bool) -> float:
        """Bytes of a shaped value (unknown sizes: DEFAULT_EXTENT, counted)."""
        shape = self.shape_of(value)
        unknown = shape.count(None)
        if static:
            self.f["dynamic_extents"] += unknown
        elements = math.prod(DEFAULT_EXTENT if s is None else s for s in shape)
        return float(elements * _element_bytes(value.type))

    def arguments(self, func):
        """Bytes of an entry function's arguments (read, or written when a memref is a
        destination) and of its results (written)."""
        for arg in func.regions[0].blocks[0].arguments:
            if not isinstance(arg.type, ir.ShapedType):
                continue
            size = self.bytes_of(arg, True)
            read, written = _argument_use(arg)
            self.arg_all += size
            if read:
                self.inputs += 1
                self.arg_read += size
            if written:
                self.outputs += 1
                self.arg_written += size
                self.elements_written += size / _element_bytes(arg.type)
        for t in ir.FunctionType(ir.TypeAttr(func.attributes["function_type"]).value).results:
            if isinstance(t, ir.ShapedType) and t.has_rank:
                dynamic = [t.is_dynamic_dim(i) for i in range(t.rank)]
                self.f["dynamic_extents"] += sum(dynamic)
                elements = math.prod(DEFAULT_EXTENT if d else s for d, s in zip(dynamic, t.shape))
                self.outputs += 1
                self.arg_written += elements * _element_bytes(t)
                self.arg_all += elements * _element_bytes(t)
                self.elements_written += elements

    def features(self) -> dict[str, float]:
        f, top = self.f, self.top
        out = dict.fromkeys(MODULE_FEATURES, 0.0)
        for name in out:
            out[name] = float(f.get(name, top.get(name, 0.0)))
        out["ops_total"] = sum(out[f"ops_{k}"] for k in ARITH_KINDS)
        out["flops"] = (out["ops_add"] + out["ops_mul"] + out["ops_div"] + 2 * out["ops_fma"]
                        + out["ops_transcendental"] + out["ops_minmax"])
        if self.innermost is not None:
            _, out["loop_trip_innermost"], out["loop_step_innermost"], out["loop_body_ops_innermost"] = (
                float(x) for x in self.innermost)
        out["arg_inputs"], out["arg_outputs"] = float(self.inputs), float(self.outputs)
        out["arg_bytes_read"], out["arg_bytes_written"] = self.arg_read, self.arg_written
        out["arg_bytes"], out["arg_elements_written"] = self.arg_all, self.elements_written
        out["bytes_accessed"] = (out["linalg_bytes_read"] + out["linalg_bytes_written"]
                                 + out["transfer_bytes"] + self.scalar_bytes)
        out["reuse"] = _ratio(out["bytes_accessed"], out["arg_bytes"])
        out["arithmetic_intensity"] = _ratio(out["flops"], out["arg_bytes"])
        out["vectorized_fraction"] = _ratio(f["vector_elements"], out["ops_total"])
        if self.lanes:  # the lane count most run (ties: the wider)
            out["vector_lanes_typical"] = float(max(self.lanes.items(), key=lambda kv: (kv[1], kv[0]))[0])
        return out


# -- reading ops ----------------------------------------------------------------------------------

_DYNAMIC = ir.ShapedType.get_dynamic_size()


def _ops_in(op):
    """The ops directly inside `op` (a module's functions)."""
    for region in op.regions:
        for block in region.blocks:
            for inner in block.operations:
                yield inner.operation


def _entry_functions(top, funcs: dict) -> list:
    """The functions counting starts from: those no function calls (public ones first: a private
    function nobody calls is dead code), in module order."""
    called = set()

    def visit(op):
        if op.name == "func.call":
            called.add(ir.FlatSymbolRefAttr(op.attributes["callee"]).value)
        return ir.WalkResult.ADVANCE
    top.walk(visit)
    uncalled = [op for name, op in funcs.items() if name not in called]
    public = [op for op in uncalled if "sym_visibility" not in op.attributes
              or ir.StringAttr(op.attributes["sym_visibility"]).value != "private"]
    return public or uncalled


def _segments(op) -> list[list]:
    """`op`'s operands split into its operand segments."""
    operands = list(op.operands)
    out, start = [], 0
    for n in ir.DenseI32ArrayAttr(op.attributes["operandSegmentSizes"]):
        out.append(operands[start:start + n])
        start += n
    return out


def _input_count(op, operands: int) -> int:
    """How many of a structured linalg op's `operands` are inputs (the rest are its inits)."""
    if "operandSegmentSizes" in op.attributes:
        return ir.DenseI32ArrayAttr(op.attributes["operandSegmentSizes"])[0]
    return operands - max(len(op.results), 1)


def _vector_of(op) -> tuple[int, int]:
    """(elements, element bytes) of the largest vector `op` reads or produces (of the widest
    elements among equals); (0, 0) when it works on no vector."""
    best = (0, 0)
    for v in (*op.operands, *op.results):
        t = v.type
        if isinstance(t, ir.VectorType):
            candidate = (math.prod(t.shape), _element_bytes(t))
            best = max(best, candidate)
    return best


def _element_bytes(t) -> int:
    """Bytes of one element of a shaped type (or of a scalar type); i1 counts as one byte."""
    e = t.element_type if isinstance(t, ir.ShapedType) else t
    if isinstance(e, ir.IndexType):
        return 8
    if isinstance(e, ir.ComplexType):
        return 2 * _element_bytes(e.element_type)
    width = getattr(e, "width", None)
    return max(1, -(-width // 8)) if isinstance(width, int) else 4


def _enum_text(attr) -> str:
    """"add" of `#vector.kind<add>`."""
    text = str(attr)
    return text[text.find("<") + 1:text.rfind(">")]


def _dynamic_size_operands(value, rank: int) -> list | None:
    """Per dimension of `value`, the operand that gave its dynamic size (None: a static size),
    when `value` is a slice or an allocation; None when nothing says."""
    if not isinstance(value, ir.OpResult):
        return None
    op = value.owner.operation
    name = op.name
    if name in ("tensor.extract_slice", "memref.subview"):
        static = list(ir.DenseI64ArrayAttr(op.attributes["static_sizes"]))
        if len(static) != rank:  # a rank-reducing slice
            return None
        sizes = iter(_segments(op)[2])
        return [next(sizes, None) if s == _DYNAMIC else None for s in static]
    if name in _TEMPORARIES:
        sizes = iter(_segments(op)[0] if "operandSegmentSizes" in op.attributes else list(op.operands))
        t = value.type
        return [next(sizes, None) if t.is_dynamic_dim(i) else None for i in range(rank)]
    return None


def _same_shape(value):
    """A value `value` has the shape of, when its op says so: a linalg op's or a loop's result
    (its init), an insert_slice's or transfer_write's result (its destination), a loop's
    iteration argument (its initial value); None otherwise."""
    if isinstance(value, ir.OpResult):
        op, n = value.owner.operation, value.result_number
        name = op.name
        if name.startswith("linalg.") and get_indexing_maps(op) is not None:
            return op.operands[_input_count(op, len(op.operands)) + n]
        if name in ("tensor.insert_slice", "vector.transfer_write"):
            return op.operands[1]
        if name == "scf.for":
            return op.operands[3 + n]
        if name == "scf.forall":
            return _segments(op)[3][n]
        return None
    if isinstance(value, ir.BlockArgument) and value.owner.owner is not None:
        op = value.owner.owner.operation
        if op.name == "scf.for" and value.arg_number >= 1:
            return op.operands[3 + value.arg_number - 1]
        if op.name == "scf.forall":
            rank = len(_mixed_bounds(op)[0])
            if value.arg_number >= rank:
                return _segments(op)[3][value.arg_number - rank]
    return None


_INT_BINARY = {
    "arith.addi": lambda a, b: a + b, "arith.subi": lambda a, b: a - b, "arith.muli": lambda a, b: a * b,
    "arith.minsi": min, "arith.maxsi": max, "arith.minui": min, "arith.maxui": max,
    "arith.floordivsi": lambda a, b: a // b if b else None,
    "arith.divsi": lambda a, b: int(a / b) if b else None, "arith.divui": lambda a, b: a // b if b else None,
    "arith.ceildivsi": lambda a, b: -(-a // b) if b else None,
}


def _int_value(value, depth: int = 0) -> int | None:
    """The integer `value` always holds, when constants make it (index arithmetic included); an
    affine.min's constant bound when its other results are not constant (a tile's full size)."""
    if depth > 8 or not isinstance(value, ir.OpResult):
        return None
    op = value.owner.operation
    name = op.name
    if name == "arith.constant":
        attr = op.attributes["value"]
        return attr.value if isinstance(attr, ir.IntegerAttr) else None
    if name in ("arith.index_cast", "arith.index_castui", "arith.extsi", "arith.extui", "arith.trunci"):
        return _int_value(op.operands[0], depth + 1)
    if name in _INT_BINARY:
        a, b = (_int_value(v, depth + 1) for v in op.operands)
        return None if a is None or b is None else _INT_BINARY[name](a, b)
    if name in ("affine.apply", "affine.min", "affine.max"):
        amap = ir.AffineMapAttr(op.attributes["map"]).value
        args = [_int_value(v, depth + 1) for v in op.operands]
        values = [_affine_value(e, args, amap.n_dims) for e in amap.results]
        known = [v for v in values if v is not None]
        if name == "affine.min":
            return min(known) if known else None
        if not known or len(known) < len(values):
            return None
        return max(known) if name == "affine.max" else known[0]
    if name in ("tensor.dim", "memref.dim"):
        index, t = _int_value(op.operands[1], depth + 1), op.operands[0].type
        if index is not None and isinstance(t, ir.ShapedType) and t.has_rank and 0 <= index < t.rank \
                and not t.is_dynamic_dim(index):
            return t.shape[index]
    return None


def _affine_value(expr, args: list, n_dims: int) -> int | None:
    """The value of affine expression `expr` at `args` (dims, then symbols; None: unknown)."""
    if isinstance(expr, ir.AffineConstantExpr):
        return expr.value
    if isinstance(expr, ir.AffineDimExpr):
        return args[expr.position] if expr.position < len(args) else None
    if isinstance(expr, ir.AffineSymbolExpr):
        return args[n_dims + expr.position] if n_dims + expr.position < len(args) else None
    if not isinstance(expr, ir.AffineBinaryExpr):
        return None
    a, b = _affine_value(expr.lhs, args, n_dims), _affine_value(expr.rhs, args, n_dims)
    if a is None or b is None:
        return None
    if isinstance(expr, ir.AffineAddExpr):
        return a + b
    if isinstance(expr, ir.AffineMulExpr):
        return a * b
    if not b:
        return None
    if isinstance(expr, ir.AffineModExpr):
        return a % b
    if isinstance(expr, ir.AffineFloorDivExpr):
        return a // b
    return -(-a // b)  # ceildiv


def _mixed_bounds(op) -> list[list]:
    """[lower bounds, upper bounds, steps] of an scf.forall / scf.parallel (None: unknown)."""
    segments = _segments(op)
    if op.name == "scf.parallel":
        return [[_int_value(v) for v in segment] for segment in segments[:3]]
    out = []
    for attr, segment in zip(("staticLowerBound", "staticUpperBound", "staticStep"), segments):
        dynamic = iter(segment)
        out.append([_int_value(next(dynamic)) if s == _DYNAMIC else s
                    for s in ir.DenseI64ArrayAttr(op.attributes[attr])])
    return out


def _affine_for_bounds(op) -> list[list]:
    """[[lower], [upper], [step]] of an affine.for (None: unknown)."""
    lower_map = ir.AffineMapAttr(op.attributes["lowerBoundMap"]).value
    upper_map = ir.AffineMapAttr(op.attributes["upperBoundMap"]).value
    args = [_int_value(v) for v in op.operands]
    n_lower = lower_map.n_dims + lower_map.n_symbols
    lower = [_affine_value(e, args[:n_lower], lower_map.n_dims) for e in lower_map.results]
    upper = [_affine_value(e, args[n_lower:], upper_map.n_dims) for e in upper_map.results]
    upper = [u for u in upper if u is not None]
    step = ir.IntegerAttr(op.attributes["step"]).value
    return [[None if None in lower else max(lower)], [min(upper) if upper else None], [step]]


def _argument_use(arg) -> tuple[bool, bool]:
    """(read, written) of a function argument: a tensor is read; a memref is written where it is
    a destination (materialize_in_destination, a vector or scalar store, a linalg op's init)."""
    if not isinstance(arg.type, ir.MemRefType):
        return True, False
    read = written = False
    for use in arg.uses:
        owner = use.owner.operation
        maps = get_indexing_maps(owner) if owner.name.startswith("linalg.") else None
        if _WRITE_OPERAND.get(owner.name) == use.operand_number or (
                maps is not None and use.operand_number >= _input_count(owner, len(maps))):
            written = True
        else:
            read = True
    return read, written


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


# -- the candidate's other features ---------------------------------------------------------------

def _number(x) -> float:
    """`x` as a float; NaN when it is not a number (None, a symbolic size)."""
    return float(x) if isinstance(x, numbers.Real) else math.nan


def _kernel_features(kernel) -> dict[str, float]:
    """One-hot kind, op count, bytes and problem size of a fastc.costmodel.KernelFeatures."""
    out = {f"kernel_kind_{k}": float(kernel.kind == k) for k in KERNEL_KINDS}
    out["kernel_ops"] = _number(kernel.ops)
    out["kernel_bytes_read"] = _number(kernel.bytes_read)
    out["kernel_bytes_written"] = _number(kernel.bytes_written)
    sizes = kernel.sizes
    if sizes is not None:
        if "xnumel" in sizes:
            out["kernel_numel"] = _number(sizes["xnumel"])
        elif "M" in sizes and "N" in sizes:
            out["kernel_numel"] = _number(sizes["M"]) * _number(sizes["N"])
        out["kernel_rnumel"] = _number(sizes.get("rnumel", sizes.get("K", 0)))
    return out


def _machine_features(machine: dict) -> dict[str, float]:
    """The numbers of a `fingerprint()` the model reads (a key it lacks: NaN)."""
    keys = {"machine_cores": "logical_cores", "machine_threads": "torch_threads", "machine_avx2": "avx2",
            "machine_avx512": "avx512f", "machine_fma": "fma", "machine_vector_bits": "vector_bits",
            "machine_l1d_bytes": "l1d_bytes", "machine_l2_bytes": "l2_bytes", "machine_l3_bytes": "l3_bytes"}
    return {feature: _number(machine.get(key)) for feature, key in keys.items()}


def _derived(f: dict, schedule, is_aten: bool) -> dict[str, float]:
    """Work and bytes per thread, and sizes against the machine's caches and vectors."""
    parallel = is_aten or bool(getattr(schedule, "parallel", False))
    threads = f["machine_threads"] if parallel else 1.0
    elements = f["kernel_numel"] if math.isfinite(f["kernel_numel"]) else f["arg_elements_written"]
    moved = f["kernel_bytes_read"] + f["kernel_bytes_written"]
    if not math.isfinite(moved):
        moved = f["arg_bytes"]
    per_thread = _per(moved, threads)
    return {"threads_used": threads, "work_per_thread": _per(elements, threads),
            "bytes_per_thread": per_thread,
            "bytes_per_thread_over_l2": _per(per_thread, f["machine_l2_bytes"]),
            "flops_per_thread": _per(f["flops"], threads),
            "working_set_over_l1": _per(f["working_set_max"], f["machine_l1d_bytes"]),
            "temp_max_over_l2": _per(f["temp_bytes_max"], f["machine_l2_bytes"]),
            "vector_bits_over_machine": _per(f["vector_bits_max"], f["machine_vector_bits"])}


def _per(a: float, b: float) -> float:
    """a / b; NaN when either is unknown or b is not positive."""
    return a / b if math.isfinite(a) and math.isfinite(b) and b > 0 else math.nan
