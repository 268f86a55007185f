"""The kernel planner's legality rules, checked on whole models' graphs: kernels are convex
(no cycles between kernels), contiguous in graph order, of one kind each, and planning leaves
results unchanged."""
import networkx as nx
import pytest
import torch
from torch._decomp import core_aten_decompositions
from torch.fx.experimental.proxy_tensor import make_fx

from fastc import make_options
from fastc.ir.kernel_plan import KernelPlan
from fastc.ir.op_facts import is_mutating, is_random
from fastc.pass_manager import run_pipeline
from fastc.passes.kernel_ops import MATMULS, REDUCTIONS, classify
from fastc.passes.plan_kernels import RESHAPES
from fastc_eval.zoo import build


class RMSNormMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.rand(32) + 0.5)
        self.up, self.gate, self.down = torch.nn.Linear(32, 64), torch.nn.Linear(32, 64), torch.nn.Linear(64, 32)

    def forward(self, x):
        h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.w
        return x + self.down(torch.nn.functional.silu(self.gate(h)) * self.up(h))


def _demo(name):
    model, inputs = build(name, batch=2)
    return model, tuple(inputs.values())


MODELS = {
    "cnn": lambda: _demo("cnn"),
    "gpt": lambda: _demo("gpt"),
    "rmsnorm-mlp": lambda: (RMSNormMLP().eval(), (torch.randn(2, 5, 32),)),
}


def _planned(name):
    model, inputs = MODELS[name]()
    with torch.no_grad():
        gm = make_fx(model, decomposition_table=core_aten_decompositions())(*inputs)
        expected = gm(*inputs)
        # the plan of the layers themselves: fuse-blocks would make the RMS-norm MLP one block op
        run_pipeline(gm, make_options({"disable": "fuse-blocks"}))
    return gm, inputs, expected


@pytest.mark.parametrize("name", sorted(MODELS))
def test_plan_is_legal_and_changes_nothing(name):
    gm, inputs, expected = _planned(name)
    plan = KernelPlan.of(gm)
    assert plan.kernels, "nothing was planned"
    nodes = list(gm.graph.nodes)
    position = {n: i for i, n in enumerate(nodes)}

    # Convex: contracting each kernel to one node leaves a DAG.
    unit = {n: ("k", n.meta["kernel"]) if "kernel" in n.meta else n for n in nodes}
    dag = nx.DiGraph()
    for n in nodes:
        dag.add_node(unit[n])
        for a in n.all_input_nodes:
            if unit[a] != unit[n]:
                dag.add_edge(unit[a], unit[n])
    assert nx.is_directed_acyclic_graph(dag)

    for k in plan.kernels:
        # Contiguous in graph order.
        spots = sorted(position[n] for n in k.nodes)
        assert spots == list(range(spots[0], spots[0] + len(spots))), k.text()
        # Never random or mutating; views only as reshapes of kernel values.
        for n in k.nodes:
            assert not is_random(n) and not is_mutating(n)
            cls = classify(n)
            if cls is not None and cls.kind == "view":
                assert n.target in RESHAPES and n.args[0] in k.nodes
        # One kind each.
        matmuls = [n for n in k.nodes if n.target in MATMULS]
        reductions = [classify(n) for n in k.nodes if n.target in REDUCTIONS]
        if k.kind == "matmul":
            assert len(matmuls) == 1 and not reductions
        elif k.kind == "reduction":
            assert reductions and not matmuls
            assert len({(r.shape, r.reduced) for r in reductions}) == 1
        else:
            assert k.kind == "pointwise" and not matmuls and not reductions
        # Moving fewer bytes than the ops one by one (never more).
        moved = k.bytes_read() + k.bytes_written()
        assert moved <= k.unfused_bytes()

    # Marks only: the graph still computes the same values.
    gm.recompile()
    with torch.no_grad():
        torch.testing.assert_close(gm(*inputs), expected)


def test_plan_roundtrips_through_text():
    from fastc.ir import parse_graph, print_graph
    gm, _, _ = _planned("rmsnorm-mlp")
    text = print_graph(gm)
    constants = {n.target: getattr(gm, n.target) for n in gm.graph.nodes if n.op == "get_attr"}
    again = parse_graph(text, constants)
    assert [k.text() for k in KernelPlan.of(again).kernels] == [k.text() for k in KernelPlan.of(gm).kernels]


def test_rmsnorm_mlp_plan_shape():
    gm, _, _ = _planned("rmsnorm-mlp")
    kinds = [k.kind for k in KernelPlan.of(gm).kernels]
    # RMS norm (one reduction kernel), three linear layers with epilogues.
    assert kinds.count("reduction") == 1 and kinds.count("matmul") == 3


class ResidualNorm(torch.nn.Module):
    """A product, the residual add after it, and the RMS norm of the sum: the shape of every
    pre-norm transformer layer boundary."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(32, 32, bias=False)
        self.w = torch.nn.Parameter(torch.rand(32) + 0.5)

    def forward(self, x, y):
        s = x + self.proj(y)
        return s, s * torch.rsqrt(s.pow(2).mean(-1, keepdim=True) + 1e-6) * self.w


def test_a_product_left_to_aten_does_not_keep_its_epilogue_from_the_norm_after_it():
    """On the cpu target products stay ATen calls (HeuristicChoices.product_in_kernel): the
    residual add that follows one fuses into the norm that reads the sum, one reduction kernel
    with two outputs, instead of a pointwise kernel of the add beside a reduction kernel."""
    model, x, y = ResidualNorm().eval(), torch.randn(2, 5, 32), torch.randn(2, 5, 32)
    with torch.no_grad():
        gm = make_fx(model, decomposition_table=core_aten_decompositions())(x, y)
        expected = gm(x, y)
        run_pipeline(gm, make_options({"target": "cpu"}))
    (kernel,) = KernelPlan.of(gm).kernels
    assert kernel.kind == "reduction"
    assert {n.target for n in kernel.nodes} >= {torch.ops.aten.add.Tensor, torch.ops.aten.mean.dim}
    assert len(kernel.outputs) == 2
    assert all(n.target not in MATMULS for n in kernel.nodes)
    gm.recompile()
    with torch.no_grad():
        for got, want in zip(gm(x, y), expected):
            torch.testing.assert_close(got, want)


class Rotary(torch.nn.Module):
    """Rotary embedding's two halves: pointwise chains reading the same values, then a cat."""

    def forward(self, x, cos, sin):
        a, b = x[..., :8], x[..., 8:]
        return torch.cat([a * cos - b * sin, a * sin + b * cos], -1)


@pytest.mark.parametrize("siblings", [True, False])
def test_pointwise_kernels_reading_the_same_values_merge(siblings):
    x, cos, sin = torch.randn(2, 4, 16), torch.randn(4, 8), torch.randn(4, 8)
    with torch.no_grad():
        gm = make_fx(Rotary(), decomposition_table=core_aten_decompositions())(x, cos, sin)
        expected = gm(x, cos, sin)
        run_pipeline(gm, make_options({"target": "cpu", "passes": f"plan-kernels{{siblings={str(siblings).lower()}}}"}))
    kernels = KernelPlan.of(gm).kernels
    if siblings:
        (kernel,) = kernels
        assert len(kernel.outputs) == 2 and kernel.kind == "pointwise"
    else:
        assert len(kernels) == 2 and all(len(k.outputs) == 1 for k in kernels)
    gm.recompile()
    with torch.no_grad():
        torch.testing.assert_close(gm(x, cos, sin), expected)
