"""The text form: print -> parse -> print is the identity, parsed graphs compute what the
originals did, and malformed text gives line, column and what was expected. Ops print the module
they came from (`scope`), for a model compiled by fastc too."""
import re
from pathlib import Path

import pytest
import torch
from torch._decomp import core_aten_decompositions
from torch.fx.experimental.proxy_tensor import make_fx

from fastc.ir import ParseError, node_scope, parse_graph, print_graph, scope_path
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


# -- declared types are checked against what the ops give ---------------------------------------------
def _graph(params: str, *body: str, result: str = "%y") -> str:
    return f"graph @g({params}) {{\n" + "".join(f"  {line}\n" for line in body) + f"  return ({result},)\n}}\n"


@pytest.mark.parametrize("text, line, column, message", [
    (_graph("%a: f32[4], %b: f32[4]", "%y: f32[8] = aten.add.Tensor(%a, %b)"),
     2, 16, "%y is declared f32[8], but aten.add.Tensor gives f32[4]"),
    (_graph("%a: f32[4], %b: f32[4]", "%y: f16[4] = aten.add.Tensor(%a, %b)"),
     2, 16, "%y is declared f16[4], but aten.add.Tensor gives f32[4]"),
    (_graph("%a: f32[4], %i: i64[4]", "%y: i64[4] = aten.mul.Tensor(%a, %i)"),
     2, 16, "%y is declared i64[4], but aten.mul.Tensor gives f32[4]"),
    (_graph("%x: f32[2, 3]", "%y: f32[3, 2] = aten.relu.default(%x)"),
     2, 19, "%y is declared f32[3, 2], but aten.relu.default gives f32[2, 3]"),
    (_graph("%x: f32[2, 3]", "%y: f32[6, 1, 1] = aten.view.default(%x, [6, 1])"),
     2, 22, "gives f32[6, 1]"),
    (_graph("%x: f32[s0, 4], %z: f32[s1, 4]", "%y: f32[s1, 4] = aten.neg.default(%x)"),
     2, 20, "%y is declared f32[s1, 4], but aten.neg.default gives f32[s0, 4]"),
    (_graph("%x: f32[s0, 4]", "%y: f32[s0, 4] = aten.cat.default([%x, %x])"),
     2, 20, "%y is declared f32[s0, 4], but aten.cat.default gives f32[2*s0, 4]"),
    (_graph("%x: f32[s0, 4]", "%n: int = aten.sym_size.int(%x, 0)", "%y: f32[s0, 2] = aten.view.default(%x, [%n, 4])"),
     3, 20, "gives f32[s0, 4]"),
    (_graph("%x: f32[4, 8]", "%vm: (f32[8], f32[8]) = aten.var_mean.correction(%x, [0])", "%y: f32[4] = getitem(%vm, 0)"),
     3, 16, "%y is declared f32[4], but getitem gives f32[8]"),
    (_graph("%x: f32[4, 8]", "%y: f32[8] = aten.var_mean.correction(%x, [0])"),
     2, 16, "%y is declared f32[8], but aten.var_mean.correction gives (f32[8], f32[8])"),
    (_graph("%x: f32[4]", "%y: float = aten.sym_size.int(%x, 0)"),
     2, 15, "%y is declared float, but aten.sym_size.int gives int"),
    (_graph("%x: f32[4]", "%c: f32[4] = const dense<[1.0]>", "%y: f32[] = aten.add.Tensor(%x, %c)"),
     3, 15, "%y is declared f32[], but aten.add.Tensor gives f32[4]"),
])
def test_declared_type_contradicting_the_op_is_an_error(text, line, column, message):
    with pytest.raises(ParseError) as info:
        parse_graph(text)
    assert (info.value.line, info.value.column) == (line, column), str(info.value)
    assert message in str(info.value)
    assert parse_graph(text, verify=False) is not None  # the syntax itself is fine


def test_the_first_wrong_declaration_is_the_one_reported():
    text = _graph("%x: f32[4]", "%a: f32[5] = aten.neg.default(%x)", "%y: f32[5] = aten.exp.default(%a)")
    with pytest.raises(ParseError, match=r"^2:16: %a is declared f32\[5\]"):
        parse_graph(text)


@pytest.mark.parametrize("text", [
    # Data-dependent sizes (u0) and int arguments of unknown value are not guessed at.
    _graph("%x: f32[8]", "%nz: i64[u0, 1] = aten.nonzero.default(%x)", "%y: i64[u0] = aten.select.int(%nz, 1, 0)"),
    _graph("%x: f32[s0, 8], %n: int", "%y: f32[s0, 8] = aten.view.default(%x, [%n, 8])"),
    # An op that cannot be evaluated on its operands' types is left unchecked.
    _graph("%x: f32[3, 4]", "%p: f32[4, 3] = aten.permute.default(%x, [1, 0])",
           "%y: f32[12] = aten.view.default(%p, [12])"),
    # `?` declares nothing; `none` items of a tuple neither.
    _graph("%x: f32[4]", "%y: ? = aten.neg.default(%x)"),
    _graph("%x: f32[4, 8]", "%vm: (none, f32[8]) = aten.var_mean.correction(%x, [0])", "%y: f32[8] = getitem(%vm, 1)"),
    # A graph argument named like a size symbol is that size.
    _graph("%x: f32[s0, 8], %s0: int", "%y: f32[s0, 2, 4] = aten.view.default(%x, [%s0, 2, 4])"),
    # Sizes that are equal but written differently.
    _graph("%x: f32[s0, 4]", "%y: f32[s0 + s0, 4] = aten.cat.default([%x, %x])"),
    _graph("%x: f32[2*s0, 4]", "%y: f32[(s0*2)//2, 8] = aten.view.default(%x, [-1, 8])"),
])
def test_consistent_or_uncheckable_declarations_parse(text):
    parse_graph(text)


def test_unknown_python_callables_are_not_called_while_parsing(monkeypatch):
    import os
    calls = []
    monkeypatch.setattr(os, "getcwd", lambda *a: calls.append(a) or "/")
    gm = parse_graph(_graph("%x: f32[4]", "%y: f32[4] = os.getcwd(%x)"))
    assert calls == [] and gm is not None


@pytest.mark.parametrize("name", ["view_sum", "norm_cat_slice", "var_mean_tuple"])
def test_roundtrip_symbolic_graphs_verify(name):
    fns = {
        "view_sum": (lambda x: x.view(x.shape[0] * 2, -1).sum(0) / x.shape[0], torch.randn(4, 6)),
        "norm_cat_slice": (lambda x: torch.cat([torch.nn.functional.layer_norm(x, (6,)), x], 0)[1:x.shape[0] + 1].softmax(-1),
                           torch.randn(4, 6)),
        "var_mean_tuple": (lambda x: torch.var_mean(x.t() @ x, dim=0), torch.randn(5, 3)),
    }
    fn, x = fns[name]
    gm = _trace(fn, x, mode="symbolic")
    text = print_graph(gm)
    assert "s" in text.splitlines()[0]
    parsed = parse_graph(text)
    assert print_graph(parsed) == text


# -- scope: the module an op came from ------------------------------------------------------------
_SCOPED_OP = re.compile(r'^  %(\w+): .* = ([\w.]+)\(.*?(?: \{.*?scope = "([^"]*)"(?: : "([^"]*)")?\})?$')


def _scopes(text: str) -> dict[str, tuple[str, str | None, str | None]]:
    """op name -> (target, scope path or None, class or None), from printed text."""
    out = {}
    for line in text.splitlines():
        m = _SCOPED_OP.match(line)
        if m and " = const " not in line:
            out[m.group(1)] = (m.group(2), m.group(3), m.group(4))
    return out


@pytest.mark.parametrize("dynamo, clean", [
    ("L['self'].layers[0].attn", "layers.0.attn"),
    ("L['self'].layers.0.attn.q_proj", "layers.0.attn.q_proj"),
    ("L['fn'].2", "2"),
    ("L['fn']", ""),
    ("L['self']._modules['layers']._modules['1'].mlp", "layers.1.mlp"),
    ("L['self'].blocks['enc']", "blocks.enc"),
    ("G['model'].head", "model.head"),
    ("layers.0.attn", "layers.0.attn"),
])
def test_scope_path_is_a_dotted_path_from_the_compiled_module(dynamo, clean):
    assert scope_path(dynamo) == clean
    assert scope_path(clean) == clean


def test_scope_prints_the_innermost_module_and_parses_back():
    gm = _trace(lambda x: (x * 2).relu().neg().exp(), torch.randn(3))
    mul, relu, neg, exp = [n for n in gm.graph.nodes if n.op == "call_function"]
    mul.meta["nn_module_stack"] = {"1": ("L['self'].layers[0]", torch.nn.Sequential),
                                   "2": ("L['self'].layers[0].fc", torch.nn.Linear)}
    relu.meta["nn_module_stack"] = {"1": ("L['fn']", torch.nn.Sequential)}  # the compiled module itself
    neg.meta["fwd_nn_module_stack"] = {"k": ("layers.1", "torch.nn.modules.activation.Tanh")}  # a backward op
    text = print_graph(gm)
    assert _scopes(text) == {"mul": ("aten.mul.Tensor", "layers.0.fc", "Linear"),
                             "relu": ("aten.relu.default", None, None),
                             "neg": ("aten.neg.default", "layers.1", "Tanh"),
                             "exp": ("aten.exp.default", None, None)}
    parsed = parse_graph(text)
    assert print_graph(parsed) == text
    scopes = [node_scope(n) for n in parsed.graph.nodes if n.op == "call_function"]
    assert scopes == [("layers.0.fc", "Linear"), None, ("layers.1", "Tanh"), None]
    torch.testing.assert_close(parsed(torch.ones(3)), gm(torch.ones(3)))


def test_scope_without_class_and_with_other_attributes():
    text = _graph("%x: f32[4]", '%a: f32[4] = aten.neg.default(%x) {kernel = 0, kind = "pointwise", scope = "blocks.3"}',
                  '%y: f32[4] = aten.exp.default(%a) {scope = "blocks.3.act" : "GELU"}')
    gm = parse_graph(text)
    a, y = [n for n in gm.graph.nodes if n.op == "call_function"]
    assert (a.meta["kernel"], a.meta["kernel_kind"], node_scope(a)) == (0, "pointwise", ("blocks.3", None))
    assert node_scope(y) == ("blocks.3.act", "GELU")
    assert print_graph(gm) == text


class _Layer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)
        self.act = torch.nn.ReLU()

    def forward(self, x):
        return self.act(self.fc(x))


class _MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layers = torch.nn.ModuleList([_Layer(), _Layer()])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x * 2  # an op of the compiled module itself: no scope


def _compile_and_dump(tmp_path: Path, training: bool) -> list[Path]:
    """The stage dumps (.fx files) of each graph fastc compiled for _MLP, per graph, in order."""
    torch._dynamo.reset()
    model = _MLP().train(training)
    x = torch.randn(4, 8)
    compiled = torch.compile(model, backend="fastc", options={"debug_dir": str(tmp_path), "on_error": "raise"})
    if training:
        compiled(x).sum().backward()
    else:
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), model(x))
    torch._dynamo.reset()
    return [sorted(d.glob("*.fx")) for d in sorted(p for p in tmp_path.iterdir() if p.is_dir())]


def _check_round_trip(files: list[Path]):
    from safetensors.torch import load_file
    store = files[0].parent / "constants.safetensors"
    constants = load_file(str(store)) if store.exists() else {}
    for path in (files[0], files[-1]):  # as captured, and as it runs
        text = path.read_text()
        assert print_graph(parse_graph(text, constants)) == text, f"{path.name} does not round-trip"


def test_compiled_model_prints_a_scope_per_layer(tmp_path):
    (files,) = _compile_and_dump(tmp_path, training=False)
    for path in (files[0], files[-1]):  # passes keep the scopes of the ops they keep
        scopes = _scopes(path.read_text())
        by_target = {}
        for target, scope, cls in scopes.values():
            by_target.setdefault(target, []).append((scope, cls))
        assert by_target["aten.addmm.default"] == [("layers.0.fc", "Linear"), ("layers.1.fc", "Linear")], path.name
        assert by_target["aten.relu.default"] == [("layers.0.act", "ReLU"), ("layers.1.act", "ReLU")], path.name
        assert by_target["aten.mul.Tensor"] == [(None, None)], path.name
    _check_round_trip(files)
    gm = parse_graph(files[0].read_text())
    layer_of = {n.name: node_scope(n)[0].split(".")[1] for n in gm.graph.nodes
                if n.op == "call_function" and node_scope(n)}
    assert set(layer_of.values()) == {"0", "1"}


def test_backward_ops_print_the_scope_of_their_forward_module(tmp_path):
    forward, backward = _compile_and_dump(tmp_path, training=True)
    assert forward[0].parent.name.endswith("forward") and backward[0].parent.name.endswith("backward")
    fw = {s for _, s, _ in _scopes(forward[0].read_text()).values()}
    bw = {s for _, s, _ in _scopes(backward[0].read_text()).values()}
    assert fw == {"layers.0.fc", "layers.0.act", "layers.1.fc", "layers.1.act", None}
    assert {"layers.0.fc", "layers.1.fc", "layers.0.act", "layers.1.act"} <= bw
    _check_round_trip(forward)
    _check_round_trip(backward)
