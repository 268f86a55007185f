"""The text form: print -> parse -> print is the identity, parsed graphs compute what the
originals did, and malformed text gives line, column and what was expected."""
import pytest
import torch
from torch._decomp import core_aten_decompositions
from torch.fx.experimental.proxy_tensor import make_fx

from fastc.ir import ParseError, parse_graph, print_graph
from fastc.ir.types import ScalarType, TensorType


def _trace(fn, *args, mode="real"):
    return make_fx(fn, decomposition_table=core_aten_decompositions(), tracing_mode=mode)(*args)


def _constants(gm):
    return {n.target: getattr(gm, n.target) for n in gm.graph.nodes if n.op == "get_attr"}


FUNCTIONS = {
    "pointwise": (lambda x, y: torch.relu(x * 2 + y).exp(), (torch.randn(3, 4), torch.randn(4))),
    "softmax": (lambda x: torch.softmax(x, -1) @ x.t(), (torch.randn(5, 5),)),
    "layer_norm": (lambda x: torch.nn.functional.layer_norm(x, (8,)), (torch.randn(2, 3, 8),)),
    "var_mean_tuple": (lambda x: torch.var_mean(x, dim=0), (torch.randn(4, 6),)),
    "int_and_bool": (lambda x, i: (x[i] > 0).sum(dtype=torch.int64), (torch.randn(6), torch.tensor([0, 2, 5]))),
    "cast": (lambda x: x.to(torch.float16).float() + x.to(torch.bfloat16).float(), (torch.randn(7),)),
    "constant": (lambda x: x + torch.arange(4.0), (torch.randn(4),)),
    "conv": (lambda x, w: torch.nn.functional.conv2d(x, w, padding=1), (torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3))),
}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_roundtrip_static(name):
    fn, args = FUNCTIONS[name]
    gm = _trace(fn, *args)
    text = print_graph(gm)
    parsed = parse_graph(text, _constants(gm))
    assert print_graph(parsed) == text
    expected, actual = gm(*args), parsed(*args)
    torch.testing.assert_close(actual, expected)


def test_roundtrip_symbolic_sizes():
    def fn(x):
        return x.view(x.shape[0] * 2, -1).sum(0) / x.shape[0]
    gm = _trace(fn, torch.randn(4, 6), mode="symbolic")
    text = print_graph(gm)
    assert "f32[s" in text and ": int = aten.sym_size.int" in text
    parsed = parse_graph(text)
    assert print_graph(parsed) == text
    for n in (3, 5):
        x = torch.randn(n, 6)
        torch.testing.assert_close(parsed(x), fn(x))


def test_constants_inline_and_by_reference():
    weight = torch.randn(64)
    gm = _trace(lambda x: x + weight * 3, torch.randn(64))
    text = print_graph(gm, inline_limit=0)
    assert "const @" in text
    with pytest.raises(ParseError, match="not among the 0 given constants"):
        parse_graph(text)
    inline = print_graph(gm, inline_limit=1000)
    assert "dense<[" in inline
    x = torch.randn(64)
    torch.testing.assert_close(parse_graph(inline)(x), gm(x))


def test_types_parse():
    gm = parse_graph("graph @g(%x: bf16[2, s0]{cuda:0}, %n: int) {\n  return (%x, %n)\n}\n")
    x, n = [node.meta["type"] for node in gm.graph.nodes if node.op == "placeholder"]
    assert isinstance(x, TensorType) and x.dtype == torch.bfloat16 and x.device == "cuda:0"
    assert x.shape[0] == 2 and str(x.shape[1]) == "s0"
    assert n == ScalarType("int")


@pytest.mark.parametrize("text, line, column, message", [
    ("graph @g(%x: f32[4]) {\n  %a: f32[4] = aten.neg.default(%y)\n  return (%a,)\n}", 2, 33, "undefined value %y"),
    ("graph @g(%x: f32[4]) {\n  %a: f32[4] = aten.nope.default(%x)\n  return (%a,)\n}", 2, 16, "unknown op"),
    ("graph @g(%x: f32[4]) {\n  %a f32[4] = aten.neg.default(%x)\n}", 2, 6, "expected ':'"),
    ("graph @g(%x: f32[4) {\n}", 1, 19, "expected ',' or ']' in a shape"),
    ("graph g(%x: f32[4]) {}", 1, 7, "expected '@'"),
    ("graph @g(%x: f32[4]) {\n  return (%x,)\n}\nextra", 4, 1, "expected end of input"),
    ('graph @g(%x: f32[4]) {\n  %a: f32[4] = aten.gelu.default(%x, approximate="tanh)\n  return (%a,)\n}',
     2, 50, "malformed string"),
])
def test_parse_errors_name_line_and_column(text, line, column, message):
    with pytest.raises(ParseError) as info:
        parse_graph(text)
    assert (info.value.line, info.value.column) == (line, column), str(info.value)
    assert message in str(info.value)
    assert str(info.value).startswith(f"{line}:{column}: ")
