"""The op table (fastc.ir.op_table) against the planner and the code generators.

Every op of the table gets a small case (sample inputs from the op's schema, or a hand-made sample
where the schema does not tell: a mask, a bound, a size, reduced dims). All cases go in one graph
per target; the planner plans it for that target, and then:

- an op the table refuses on the target is in no kernel, and every pointwise op and reduction it
  does not refuse is in one (so the lowering below really sees it);
- every kernel lowers, with no Unsupported: triton-interpret through codegen.triton.lower, run by
  Triton's interpreter; triton lowered only (no GPU here); cpu through codegen.cpu.compile_kernels,
  every kernel generated, none refused;
- what the kernels compute is what eager computes (the same ops run one by one).

And the Triton pointwise rules are exactly the table's pointwise ops less those it refuses Triton.
"""
from __future__ import annotations

import operator
import os
from dataclasses import dataclass, field

import pytest
import torch
import torch.fx as fx
from torch._subclasses import FakeTensorMode

from fastc.ir.kernel_plan import KernelPlan
from fastc.ir.op_table import OP_TABLE, TRITON, refusal
from fastc.passes import PlanKernels
from fastc.passes.context import PassContext

aten = torch.ops.aten
prims = torch.ops.prims

_INTEGER_OPS = ("bitwise", "shift")


def _x(case, dtype=torch.float32, shape=(3, 5), low=-2.0, high=2.0):
    """A sample tensor of values in [low, high), drawn from the case's generator."""
    g = case.generator
    if dtype.is_floating_point:
        return (torch.rand(shape, generator=g) * (high - low) + low).to(dtype)
    return torch.randint(int(low), int(high), shape, generator=g, dtype=dtype)


@dataclass
class Case:
    op: object
    make: object = None     # case -> (args, kwargs); None: from the op's schema
    view: bool = False      # between a pointwise producer and consumer (a view fuses only there)
    name: str = ""
    generator: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(0))

    def sample(self):
        return self.make(self) if self.make is not None else (_from_schema(self), {})


def _from_schema(case):
    """Positional arguments up to the first with a default: a tensor per Tensor argument (int32
    for bitwise ops, small non-negative shift amounts for shifts), 0.75 (3) per number, 1 per int."""
    name = case.op._schema.name
    integer = any(w in name for w in _INTEGER_OPS)
    args = []
    for a in case.op._schema.arguments:
        if a.kwarg_only or a.has_default_value():
            break
        t = str(a.type)
        if t.startswith("Tensor") and "shift" in name:
            args.append(_ints(case, torch.int32, low=0, high=8))
        elif t.startswith("Tensor"):
            args.append(_ints(case, torch.int32, low=-20, high=20) if integer else _x(case))
        elif t in ("Scalar", "float", "number"):
            args.append(3 if integer else 0.75)
        elif t == "int":
            args.append(1)
        else:
            raise TypeError(f"{case.op}: no sample for argument {a.name}: {t}; give the case a `make`")
    return args


def _bool(case):
    return _x(case) > 0


def _ints(case, dtype=torch.int64, low=-9, high=9):
    return _x(case, dtype, low=low, high=high)


def _nan_rows(case):
    x = _x(case)
    x[0, 0] = x[1, 3] = float("nan")
    return x


def _divisors(case):
    """Non-zero integers, both signs."""
    x = _ints(case, torch.int32, low=1, high=5)
    return torch.where(_bool(case), x, -x)


# Samples the schema does not give, (args, kwargs) per case: a case without a name stands for its
# op's case from the schema; a named one is one more case of its op.
HAND_MADE = [
    Case(aten.clamp.default, lambda c: ((_x(c), -0.5, 0.5), {})),
    Case(aten.clamp.Tensor, lambda c: ((_x(c), _x(c, shape=(5,), high=0.0), _x(c, shape=(3, 1), low=0.0)), {})),
    Case(aten.hardtanh.default, lambda c: ((_x(c), -0.5, 0.25), {}), name="bounds"),
    Case(aten.where.self, lambda c: ((_bool(c), _x(c), _x(c)), {})),
    Case(aten.masked_fill.Scalar, lambda c: ((_x(c), _bool(c), 0.5), {})),
    Case(aten.masked_fill.Tensor, lambda c: ((_x(c), _bool(c), torch.tensor(0.5)), {})),
    Case(aten.full.default, lambda c: (([3, 5], 0.5), {})),
    Case(aten.round.decimals, lambda c: ((_x(c),), {"decimals": 2})),
    Case(aten.div.Tensor_mode, lambda c: ((_x(c), _x(c)), {"rounding_mode": "floor"})),
    Case(aten.div.Tensor_mode, lambda c: ((_x(c), _x(c)), {"rounding_mode": "trunc"}), name="trunc"),
    Case(aten.div.Scalar_mode, lambda c: ((_x(c), 0.7), {"rounding_mode": "floor"})),
    Case(aten._to_copy.default, lambda c: ((_x(c),), {"dtype": torch.float16})),
    Case(prims.convert_element_type.default, lambda c: ((_x(c), torch.float64), {})),
    Case(aten.gelu.default, lambda c: ((_x(c),), {"approximate": "tanh"}), name="tanh"),
    Case(aten.pow.Tensor_Scalar, lambda c: ((_x(c), 3), {}), name="cube"),
    # Integers, where a target refuses them (or they take another path).
    Case(aten.floor_divide.default, lambda c: ((_ints(c, torch.int32), _divisors(c)), {}), name="int"),
    Case(aten.div.Tensor_mode, lambda c: ((_ints(c), _divisors(c)), {"rounding_mode": "floor"}), name="int"),
    Case(aten.pow.Tensor_Scalar, lambda c: ((_ints(c, low=-3, high=4), 2), {}), name="int square"),
    Case(aten.pow.Tensor_Scalar, lambda c: ((_ints(c, low=-3, high=4), 5), {}), name="int"),
    Case(aten.pow.Tensor_Tensor, lambda c: ((_ints(c, low=-3, high=4), _ints(c, low=0, high=4)), {}), name="int"),
    Case(aten.remainder.Tensor, lambda c: ((_ints(c, torch.int32), _divisors(c)), {}), name="int"),
    # Reductions.
    Case(aten.sum.dim_IntList, lambda c: ((_x(c), [1]), {})),
    Case(aten.sum.dim_IntList, lambda c: ((_x(c), [0], True), {}), name="outer"),
    Case(aten.sum.default, lambda c: ((_x(c),), {})),
    Case(aten.mean.dim, lambda c: ((_x(c), [1]), {})),
    Case(aten.mean.default, lambda c: ((_x(c),), {})),
    Case(aten.amax.default, lambda c: ((_x(c), [1]), {})),
    Case(aten.amin.default, lambda c: ((_x(c), [0], True), {})),
    Case(aten.var.correction, lambda c: ((_x(c), [1]), {"correction": 1})),
    Case(aten.var_mean.correction, lambda c: ((_x(c), [1]), {"correction": 0, "keepdim": True})),
    Case(aten.prod.dim_int, lambda c: ((_x(c), 1), {})),
    Case(aten.prod.dim_int, lambda c: ((_ints(c, low=-3, high=4), 0, True), {}), name="int"),
    Case(aten.prod.default, lambda c: ((_x(c),), {})),
    Case(aten.any.dim, lambda c: ((_bool(c), 1), {})),
    Case(aten.any.dims, lambda c: ((_x(c), [0]), {})),
    Case(aten.any.default, lambda c: ((_bool(c),), {})),
    Case(aten.all.dim, lambda c: ((_bool(c), 0, True), {})),
    Case(aten.all.dims, lambda c: ((_bool(c), [1]), {})),
    Case(aten.all.default, lambda c: ((_x(c),), {})),
    Case(aten.argmax.default, lambda c: ((_x(c), 1), {})),
    Case(aten.argmax.default, lambda c: ((_ints(c, torch.int32), 1), {}), name="int"),
    Case(aten.argmax.default, lambda c: ((_ints(c),), {}), name="all"),
    Case(aten.argmin.default, lambda c: ((_x(c), 0), {})),
    Case(aten.argmin.default, lambda c: ((_ints(c, torch.int32), 0, True), {}), name="int"),
    Case(aten.max.dim, lambda c: ((_x(c), 1), {})),
    Case(aten.min.dim, lambda c: ((_x(c), 0, True), {})),
    Case(aten._softmax.default, lambda c: ((_x(c), 1, False), {})),
    Case(aten._log_softmax.default, lambda c: ((_x(c), 0, False), {})),
    Case(aten.native_layer_norm.default, lambda c: ((_x(c), [5], _x(c, shape=(5,)), _x(c, shape=(5,)), 1e-5), {})),
    # NaN in some rows: it wins max, min and their positions, and spreads through a product.
    *[Case(op, make, name="nan") for op, make in [
        (aten.amax.default, lambda c: ((_nan_rows(c), [1]), {})),
        (aten.amin.default, lambda c: ((_nan_rows(c), [0]), {})),
        (aten.max.dim, lambda c: ((_nan_rows(c), 1), {})),
        (aten.min.dim, lambda c: ((_nan_rows(c), 0), {})),
        (aten.argmax.default, lambda c: ((_nan_rows(c), 1), {})),
        (aten.argmin.default, lambda c: ((_nan_rows(c), 0), {})),
        (aten.prod.dim_int, lambda c: ((_nan_rows(c), 1), {})),
        (aten._softmax.default, lambda c: ((_nan_rows(c), 1, False), {})),
        (aten.maximum.default, lambda c: ((_nan_rows(c), _x(c)), {})),
        (aten.clamp.default, lambda c: ((_nan_rows(c), -0.5, 0.5), {})),
    ]],
    # Matrix products.
    Case(aten.mm.default, lambda c: ((_x(c, shape=(3, 4)), _x(c, shape=(4, 5))), {})),
    Case(aten.addmm.default, lambda c: ((_x(c, shape=(5,)), _x(c, shape=(3, 4)), _x(c, shape=(4, 5))), {})),
    Case(aten.bmm.default, lambda c: ((_x(c, shape=(2, 3, 4)), _x(c, shape=(2, 4, 5))), {})),
    # Views, each between a producer and a consumer: only reshapes of kernel values fuse.
    *[Case(op, make, view=True) for op, make in [
        (aten.view.default, lambda c: ((_x(c), [15]), {})),
        (aten._unsafe_view.default, lambda c: ((_x(c), [5, 3]), {})),
        (aten.reshape.default, lambda c: ((_x(c), [5, 3]), {})),
        (aten.permute.default, lambda c: ((_x(c), [1, 0]), {})),
        (aten.expand.default, lambda c: ((_x(c, shape=(1, 5)), [3, 5]), {})),
        (aten.slice.Tensor, lambda c: ((_x(c), 1, 1, 4), {})),
        (aten.alias.default, lambda c: ((_x(c),), {})),
        (aten.squeeze.dim, lambda c: ((_x(c, shape=(3, 1, 5)), 1), {})),
        (aten.squeeze.dims, lambda c: ((_x(c, shape=(3, 1, 5)), [1]), {})),
        (aten.unsqueeze.default, lambda c: ((_x(c), 1), {})),
        (aten.t.default, lambda c: ((_x(c),), {})),
        (aten.transpose.int, lambda c: ((_x(c), 0, 1), {})),
        (aten.select.int, lambda c: ((_x(c), 0, 1), {})),
        (aten.as_strided.default, lambda c: ((_x(c), [2, 2], [1, 1]), {})),
        (aten.diagonal.default, lambda c: ((_x(c),), {})),
    ]],
]


def cases() -> list[Case]:
    """The hand-made cases, and a case from its schema for every op of the table without an
    unnamed hand-made one."""
    made = {c.op for c in HAND_MADE if not c.name}
    return HAND_MADE + [Case(op) for op in OP_TABLE if op not in made]


@dataclass
class OpGraph:
    gm: fx.GraphModule
    inputs: list             # real tensors, one per placeholder
    ops: dict                # node of the op under test -> its case


def build_graph(all_cases: list[Case]) -> OpGraph:
    """One graph holding every case, each on placeholders of its own; example values are fake
    tensors (what the planner and torch-mlir read types from)."""
    graph, fake = fx.Graph(), FakeTensorMode()
    inputs, ops, outputs = [], {}, []

    def placeholder(x):
        node = graph.placeholder(f"in{len(inputs)}")
        node.meta["val"] = fake.from_tensor(x)
        inputs.append(x)
        return node

    def call(target, args, kwargs=None):
        node = graph.call_function(target, tuple(args), kwargs or {})
        vals = fx.node.map_arg((node.args, node.kwargs), lambda n: n.meta["val"])
        with fake:
            node.meta["val"] = target(*vals[0], **vals[1])
        return node

    for case in all_cases:
        args, kwargs = case.sample()
        args = [placeholder(a) if isinstance(a, torch.Tensor) else a for a in args]
        if case.view:
            args[0] = call(aten.exp.default, [args[0]])
        node = call(case.op, args, kwargs)
        ops[node] = case
        results = [node]
        if isinstance(node.meta["val"], (tuple, list)):
            results = [call(operator.getitem, [node, i]) for i in range(len(node.meta["val"]))]
        if case.view:
            results = [call(aten.neg.default, [r]) for r in results]
        outputs += results
    graph.output(tuple(outputs))
    return OpGraph(fx.GraphModule({}, graph), inputs, ops)


def eager_values(g: OpGraph) -> dict:
    """Every node's value, the graph's ops run one by one on the real inputs."""
    values = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n):
            values[n] = super().run_node(n)
            return values[n]
    Recorder(g.gm).run(*g.inputs)
    return values


def plan(target: str) -> tuple[OpGraph, list, list[str]]:
    """The graph of all cases planned for `target`: (graph, kernels, planning mistakes)."""
    g = build_graph(cases())
    PlanKernels().run(g.gm, PassContext(target=target))
    mistakes = []
    for node, case in g.ops.items():
        planned = "kernel" in node.meta
        reason = refusal(node, target)
        if reason is not None and planned:
            mistakes.append(f"{_name(case)}: planned, but the table says {target} refuses it ({reason})")
        if reason is None and not planned and OP_TABLE[case.op].kind in ("pointwise", "reduction"):
            mistakes.append(f"{_name(case)}: the table says {target} lowers it, but it is not planned")
    return g, KernelPlan.of(g.gm).kernels, mistakes


def _name(case) -> str:
    return f"{case.op}" + (f" ({case.name})" if case.name else "")


def _ops_of(kernel, g: OpGraph) -> str:
    return ", ".join(_name(g.ops[n]) for n in kernel.nodes if n in g.ops)


def _compare(kernel, g: OpGraph, values: dict, outs, mistakes: list) -> None:
    for node, out in zip(kernel.outputs, outs):
        try:
            torch.testing.assert_close(out, values[node], atol=1e-5, rtol=1e-5, equal_nan=True)
        except AssertionError as e:
            why = "; ".join(line for line in str(e).splitlines()[:4] if line)
            mistakes.append(f"{_ops_of(kernel, g)}: {node.name} differs from eager: {why}")


@pytest.fixture(autouse=True)
def _private_kernel_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTC_CACHE_DIR", str(tmp_path / "fastc-cache"))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # masked-off lanes of interpreted kernels
@pytest.mark.parametrize("target", ["triton-interpret", "triton"])
def test_every_planned_op_lowers_on_triton(target):
    if target == "triton-interpret" and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("generated Triton runs in Triton's interpreter: run pytest with TRITON_INTERPRET=1")
    from fastc.codegen.errors import Unsupported
    from fastc.codegen.triton import lower
    g, kernels, mistakes = plan(target)
    values = eager_values(g) if target == "triton-interpret" else {}
    for k in kernels:
        try:
            generated = lower(k, g.gm, options={"target": target}, use_cache=False)
        except Unsupported as e:
            mistakes.append(f"{_ops_of(k, g)}: refused by Triton: {e.reason}")
            continue
        if target == "triton-interpret":
            outs = generated.run(*[values[n] for n in k.inputs])
            _compare(k, g, values, outs, mistakes)
    assert not mistakes, "\n".join(mistakes)


def test_every_planned_op_lowers_on_cpu():
    pytest.importorskip("torch_mlir", reason="the native CPU target needs torch-mlir")
    from fastc.codegen.cpu import compile_kernels
    g, kernels, mistakes = plan("cpu")
    values = eager_values(g)
    made, failed = compile_kernels(kernels)
    by_name = {k.name: k for k in kernels}
    mistakes += [f"{_ops_of(by_name[name], g)}: refused by the native CPU target: {reason}"
                 for name, reason in failed]
    for k in kernels:
        if k.id in made:
            _compare(k, g, values, made[k.id].run(*[values[n] for n in k.inputs]), mistakes)
    assert not mistakes, "\n".join(mistakes)


def test_triton_rules_are_the_tables_pointwise_ops():
    """Each pointwise op the table says Triton lowers has a rule, and no rule is for another op."""
    from fastc.codegen.triton.pointwise_ops import POINTWISE
    always_refused = {op for op, e in OP_TABLE.items()
                      if any(r.when is None and set(TRITON) <= set(r.targets) for r in e.refusals)}
    lowered = {op for op, e in OP_TABLE.items() if e.kind == "pointwise"} - always_refused
    assert not lowered - set(POINTWISE), f"no Triton rule for {sorted(map(str, lowered - set(POINTWISE)))}"
    assert not set(POINTWISE) - lowered, f"rules for ops the table does not plan on Triton: " \
                                         f"{sorted(map(str, set(POINTWISE) - lowered))}"


def test_every_op_of_the_table_has_a_case_and_every_refusal_an_op():
    from fastc.ir.op_table import REFUSALS
    assert {c.op for c in cases()} == set(OP_TABLE)
    assert set(REFUSALS) <= set(OP_TABLE), sorted(map(str, set(REFUSALS) - set(OP_TABLE)))
