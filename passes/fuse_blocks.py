"""fuse-blocks: a whole residual block (convolutions or a transformer MLP with its residual add)
as one block op, which the target runs as one kernel (a block kernel) or layer by layer."""
from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.fx as fx

from fastc.costmodel import KernelFeatures
from fastc.ir.constants import add_constant, constant_value, is_constant
from fastc.ir.types import TensorType, node_type
import fastc.kernels.blocks  # noqa: F401  (registers the block ops)
from fastc.kernels.onednn import ACTIVATIONS

from .base import Pass, register
from .context import PassContext
from .product_epilogues import _activation_after
from .products import KEPT_META, match_product, product_operands

aten = torch.ops.aten
CONVFIRST = torch.ops.fastc.convfirst_block.default
CONVNEXT = torch.ops.fastc.convnext_block.default
MBCONV = torch.ops.fastc.mbconv_block.default
INVERTED = torch.ops.fastc.inverted_block.default
MLP = torch.ops.fastc.mlp_block.default
BLOCK_OPS = (CONVFIRST, CONVNEXT, INVERTED, MBCONV, MLP)

FLOATS = (torch.float32, torch.float16, torch.bfloat16)
# Ops between a product and what reads it that change nothing but the shape: a linear layer on
# N-D input is view -> addmm -> view in an ATen graph; a dropout at inference is a clone.
PASS_THROUGH = (aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.clone.default)


@register
@dataclass(frozen=True)
class FuseBlocks(Pass):
    """Rewrites a residual block whose every intermediate value has one reader into one op
    (kernels/blocks.py has their exact definitions):

        x + conv1x1(act(conv1x1(conv_kxk(x, groups=g))))              -> fastc.convfirst_block
        x + conv1x1(act2(dwconv_kxk(act1(conv1x1(x)))))               -> fastc.mbconv_block
        x + g * permute(down(act(up(layer_norm(permute(conv_kxk(x)))))))  -> fastc.convnext_block
        conv1x1(act2(dwconv_kxk(pad(act1(conv1x1(x))), stride)))      -> fastc.inverted_block
        x + down(act(up(norm(x))) [* gate(norm(x))])                  -> fastc.mlp_block

    Convolutions: weights and biases constants (BatchNorm folded before this pass), stride 1,
    dilation 1, the k x k one odd-sized with padding k // 2 (the block keeps its input's shape),
    the 1x1s ungrouped. MLP: the products mm / addmm / linear with constant weights (through
    views and N-D input reshapes; a clone between them, a dropout at inference, goes), the norm
    none, a layer norm over the last dimension, or an RMS norm spelled out (x * rsqrt(mean(x^2) +
    eps) * w), the gate a second product of the same normalized input multiplying the activated
    one (SwiGLU). An inverted block without a residual: the depthwise conv of stride 1 or 2, its
    padding (its own, or a zero constant_pad_nd before it) any amount below k per side, the
    projection to any number of channels. ConvNeXt: the k x k conv's output permuted channels-last, a layer norm over the
    channels, two linear layers, permuted back, the layer scale g (a constant, before or after the
    permute; optional); the norm's weight and bias are folded into the expansion and g into the
    projection (new constants; exact up to float rounding). Activations: kernels.onednn.ACTIVATIONS. Legality: floating point (fp32, fp16,
    bf16), input and output of one shape and dtype, and no intermediate value read outside the
    block (so the rewrite is convex and nothing else sees what it removes); no op of the block has
    side effects. Exact up to float rounding. Which legal blocks become block ops is the choices
    object's preference (`fuse_block`, kind "block"); how each then runs (one generated block
    kernel, or the layers one by one) is decided per problem at code generation.
    """
    name = "fuse-blocks"

    def run(self, gm: fx.GraphModule, ctx: PassContext) -> int:
        fused = 0
        for node in list(gm.graph.nodes):
            if node.op != "call_function" or node.target is not aten.add.Tensor or node.kwargs:
                continue
            if node.graph is None or node not in gm.graph.nodes:
                continue
            found = _conv_block(node) or _mlp_block(gm, node)
            if found is None or not _wanted(ctx.choices, node, found):
                continue
            _rewrite(gm, node, found)
            fused += 1
        # Inverted blocks without a residual (strided, or changing the channel count): after the
        # residual ones, which end at their add.
        for node in list(gm.graph.nodes):
            if node not in gm.graph.nodes or node.op != "call_function" or node.target is not aten.convolution.default:
                continue
            found = _inverted(node)
            if found is None or not _wanted(ctx.choices, node, found):
                continue
            _rewrite(gm, node, found)
            fused += 1
        if fused:
            gm.graph.eliminate_dead_code()
            gm.graph.lint()
            gm.recompile()
        return fused


@dataclass
class Found:
    op: object               # CONVFIRST, MBCONV or MLP
    x: fx.Node               # the block's input (the residual)
    args: list               # the op's arguments after x: nodes, constants, literals
    macs: int                # multiply-adds per element of x's leading dims (for features)
    hidden: int


# -- shared helpers ---------------------------------------------------------------------------

def _tensor(node) -> TensorType | None:
    t = node_type(node) if isinstance(node, fx.Node) else None
    return t if isinstance(t, TensorType) else None


def _only_reader(node: fx.Node, reader: fx.Node) -> bool:
    """Whether `reader` is the one reader of `node`'s value (readers of its sizes aside: fuse-blocks
    reads those from the block's input instead, _sizes_from_input)."""
    return [u for u in node.users if u.target is not aten.sym_size.int] == [reader]


def _through_act(h: fx.Node):
    """(e, act, act_args) when `h` is a supported activation of `e` whose only readers are the
    activation's own nodes; (h, "none", []) when h is no activation."""
    e = None
    if h.op == "call_function" and h.target is aten.mul.Tensor and len(h.args) == 2:
        a, b = h.args
        for v, s in ((a, b), (b, a)):
            if isinstance(s, fx.Node) and s.target is aten.sigmoid.default and s.args[0] is v:
                e = v
    elif h.op == "call_function" and h.args and isinstance(h.args[0], fx.Node) and h.target in (
            aten.relu.default, aten.hardtanh.default, aten.gelu.default, aten.silu.default,
            aten.sigmoid.default, aten.tanh.default, aten.hardswish.default):
        e = h.args[0]
    spelled = _spelled_tanh_gelu(h)
    if spelled is not None:
        return spelled, "gelu-tanh", []
    if e is None:
        return h, "none", []
    found = _activation_after(e, [u for u in e.users if u.target is not aten.sym_size.int])
    if found is None or found[2][0] is not h or found[0] not in ACTIVATIONS:
        return h, "none", []
    return e, found[0], list(found[1])


def _scalar_mul(node, value: float, rel: float = 1e-6):
    """The tensor operand of `node` when it is `t * value` (either order), else None."""
    if not isinstance(node, fx.Node) or node.target is not aten.mul.Tensor or len(node.args) != 2:
        return None
    a, b = node.args
    t, c = (a, b) if isinstance(b, (int, float)) else (b, a)
    ok = isinstance(c, (int, float)) and not isinstance(c, bool) and abs(c - value) <= rel * abs(value)
    return t if ok and isinstance(t, fx.Node) else None


def _spelled_tanh_gelu(h: fx.Node):
    """e when `h` is the tanh GELU of e spelled out as GPT-2 writes it,
    (e * 0.5) * (1 + tanh(sqrt(2/pi) * (e + 0.044715 * e^3))), every op read only inside it;
    else None."""
    if h.op != "call_function" or h.target is not aten.mul.Tensor or len(h.args) != 2:
        return None
    for half, one_plus in (h.args, h.args[::-1]):
        e = _scalar_mul(half, 0.5)
        if e is None or not isinstance(one_plus, fx.Node) or one_plus.target is not aten.add.Tensor:
            continue
        t, one = one_plus.args[:2] if isinstance(one_plus.args[1], (int, float)) else one_plus.args[1::-1]
        if one != 1 or not isinstance(t, fx.Node) or t.target is not aten.tanh.default:
            continue
        inner = _scalar_mul(t.args[0], 0.7978845608028654)
        if inner is None or inner.target is not aten.add.Tensor:
            continue
        p, q = inner.args[:2]
        cube_scaled = q if p is e else p if q is e else None
        cube = _scalar_mul(cube_scaled, 0.044715)
        if cube is None or cube.target is not aten.pow.Tensor_Scalar or cube.args[0] is not e or cube.args[1] != 3:
            continue
        chain = [(half, h), (one_plus, h), (t, one_plus), (t.args[0], t), (inner, t.args[0]),
                 (cube_scaled, inner), (cube, cube_scaled)]
        if not all(_only_reader(n, r) for n, r in chain):
            continue
        readers = {u for u in e.users if u.target is not aten.sym_size.int}
        if readers == {half, cube, inner}:
            return e
    return None


def _strip(node, reader: fx.Node | None = None):
    """`node` read back through pass-through ops (views, clones) that only pass it on."""
    while isinstance(node, fx.Node) and node.op == "call_function" and node.target in PASS_THROUGH \
            and (reader is None or _only_reader(node, reader)) and isinstance(node.args[0], fx.Node):
        if node.target is aten.clone.default and node.kwargs.get("memory_format") not in (
                None, torch.contiguous_format, torch.preserve_format):
            break
        reader, node = node, node.args[0]
    return node


def _same_shape(a: fx.Node, b: fx.Node) -> bool:
    """Whether two values have one shape: equal static sizes, or symbolic ones the shape
    environment proves equal (((s**2) // s) is s)."""
    ta, tb = _tensor(a), _tensor(b)
    if ta is None or tb is None or len(ta.shape) != len(tb.shape):
        return False
    if ta.shape == tb.shape:
        return True
    va, vb = a.meta.get("val"), b.meta.get("val")
    if not isinstance(va, torch.Tensor) or not isinstance(vb, torch.Tensor):
        return False
    from torch.fx.experimental.symbolic_shapes import statically_known_true
    return all(statically_known_true(p == q) for p, q in zip(va.shape, vb.shape))


def _floating(t: TensorType | None) -> bool:
    return t is not None and t.dtype in FLOATS


# -- convolution blocks -----------------------------------------------------------------------

def _conv(node, kernel: int | None = None):
    """(input, weight node, bias node or None, groups, k, the input's reader) of a stride-1 2-D
    convolution with constant weight and bias keeping its spatial size (padding k // 2, or a
    zero `constant_pad_nd` by k // 2 before it that nothing else reads), else None."""
    if not isinstance(node, fx.Node) or node.op != "call_function" or node.target is not aten.convolution.default:
        return None
    x, w, b, stride, padding, dilation, transposed, _, groups = node.args
    if transposed or not is_constant(w) or (b is not None and not is_constant(b)) or not isinstance(x, fx.Node):
        return None
    wv = constant_value(w)
    if wv.dim() != 4 or wv.shape[2] != wv.shape[3] or wv.shape[2] % 2 != 1:
        return None
    k, reader = wv.shape[2], node
    padding = list(padding)
    if x.op == "call_function" and x.target is aten.constant_pad_nd.default and padding == [0, 0] \
            and list(x.args[1]) == [k // 2] * 4 and (len(x.args) < 3 or x.args[2] == 0) \
            and _only_reader(x, node) and isinstance(x.args[0], fx.Node):
        reader, x, padding = x, x.args[0], [k // 2, k // 2]
    if list(stride) != [1, 1] or list(dilation) != [1, 1] or padding != [k // 2, k // 2]:
        return None
    if kernel is not None and k != kernel:
        return None
    return x, w, b, groups, k, reader


def _conv_block(add: fx.Node) -> Found | None:
    out = _tensor(add)
    if out is None or len(out.shape) != 4 or not _floating(out):
        return None
    for x, p in (add.args[:2], add.args[1::-1]):
        if not isinstance(p, fx.Node) or not isinstance(x, fx.Node) or not _only_reader(p, add):
            continue
        xt = _tensor(x)
        if xt is None or not _same_shape(x, add) or xt.dtype != out.dtype:
            continue
        found = _convfirst(x, p) or _mbconv(x, p) or _convnext(x, p)
        if found is not None:
            return found
    return None


def _one_by_one(p: fx.Node):
    proj = _conv(p, kernel=1)
    return proj if proj is not None and proj[3] == 1 else None


def _projection(p: fx.Node):
    """(the 1x1 projection's match, the value before its activation, act, act_args) when `p` is
    an ungrouped 1x1 conv whose input is read by it alone, else None."""
    proj = _one_by_one(p)
    if proj is None or not _only_reader(proj[0], proj[5]):
        return None
    return (proj, *_through_act(proj[0]))


def _convfirst(x: fx.Node, p: fx.Node) -> Found | None:
    found = _projection(p)
    if found is None:
        return None
    proj, e, act, act_args = found
    exp = _one_by_one(e)
    if exp is None:
        return None
    s = exp[0]
    spatial = _conv(s)
    if spatial is None or not _only_reader(s, exp[5]) or spatial[0] is not x:
        return None
    channels = constant_value(spatial[1]).shape[0]
    hidden = constant_value(exp[1]).shape[0]
    if constant_value(proj[1]).shape[0] != channels or constant_value(exp[1]).shape[1] != channels:
        return None
    k, g = spatial[4], spatial[3]
    macs = channels * (channels // g) * k * k + 2 * channels * hidden
    return Found(CONVFIRST, x, [spatial[1], spatial[2], g, exp[1], exp[2], act, act_args, proj[1], proj[2]],
                 macs, hidden)


def _mbconv(x: fx.Node, p: fx.Node) -> Found | None:
    found = _projection(p)
    if found is None:
        return None
    proj, d, act2, act2_args = found
    dw = _conv(d)
    if dw is None:
        return None
    hidden = constant_value(dw[1]).shape[0]
    if dw[3] != hidden or constant_value(dw[1]).shape[1] != 1:
        return None
    h1 = dw[0]
    if not _only_reader(h1, dw[5]):
        return None
    e, act1, act1_args = _through_act(h1)
    exp = _one_by_one(e)
    if exp is None or exp[0] is not x or constant_value(exp[1]).shape[0] != hidden:
        return None
    channels = constant_value(exp[1]).shape[1]
    if constant_value(proj[1]).shape[0] != channels:
        return None
    k = dw[4]
    macs = 2 * channels * hidden + hidden * k * k
    return Found(MBCONV, x, [exp[1], exp[2], act1, act1_args, dw[1], dw[2], act2, act2_args, proj[1], proj[2]],
                 macs, hidden)


def _convnext(x: fx.Node, v: fx.Node) -> Found | None:
    """x + [g *] permute([g *] down(act(up(layer_norm(permute(conv_kxk(x)))))), [0, 3, 1, 2])."""
    gamma, node = None, v

    def scale(n):
        if n.op == "call_function" and n.target is aten.mul.Tensor and len(n.args) == 2:
            a, b = n.args
            g, t = (a, b) if is_constant(a) else (b, a) if is_constant(b) else (None, None)
            if g is not None and isinstance(t, fx.Node) and _only_reader(t, n):
                return constant_value(g), t
        return None, n
    gamma, node = scale(node)
    if node.op != "call_function" or node.target is not aten.permute.default or list(node.args[1]) != [0, 3, 1, 2]:
        return None
    inner_gamma, u = scale(node.args[0])
    if inner_gamma is not None:
        if gamma is not None:
            return None
        gamma = inner_gamma
    if not isinstance(u, fx.Node) or not _only_reader(u, node if inner_gamma is None else _reader_of(u)):
        return None
    down = _linear(u)
    if down is None or not _chain_below(u, down[0]):
        return None
    dnode, h, dm, db = down
    if not _chain_below(dnode.args[dm.x_index], h) or not _only_reader(_below(dnode.args[dm.x_index], h), dnode):
        return None
    e, act, act_args = _through_act(h)
    up = _linear(e)
    if up is None or not _chain_below(e, up[0]):
        return None
    unode, n, um, ub = up
    if not _reaches_only(n, {unode}):
        return None
    pp = n.args[0].args[0] if (n.op == "call_function" and n.target is operator.getitem and n.args[1] == 0
                               and n.args[0].target is aten.native_layer_norm.default) else None
    if pp is None or pp.target is not aten.permute.default or list(pp.args[1]) != [0, 2, 3, 1]:
        return None
    ln = n.args[0]
    if not _only_reader(ln, n) or not _only_reader(pp, ln):
        return None
    shape, lw, lb, eps = ln.args[1:5]
    c = pp.args[0]
    spatial = _conv(c)
    if spatial is None or spatial[0] is not x or not _only_reader(c, pp):
        return None
    channels = constant_value(spatial[1]).shape[0]
    if list(shape) != [channels] or any(w is not None and not is_constant(w) for w in (lw, lb)):
        return None
    hidden = um.weight.shape[0]
    if um.weight.shape[1] != channels or tuple(dm.weight.shape) != (channels, hidden):
        return None
    if gamma is not None and gamma.numel() != channels:
        return None
    k, g = spatial[4], spatial[3]
    macs = channels * (channels // g) * k * k + 2 * channels * hidden
    folds = (um, ub, lw, lb, dm, db, gamma)
    return Found(CONVNEXT, x, [spatial[1], spatial[2], g, float(eps), folds, act, act_args], macs, hidden)


def _reader_of(node: fx.Node) -> fx.Node:
    users = [u for u in node.users if u.target is not aten.sym_size.int]
    return users[0] if len(users) == 1 else None


def _convnext_weights(gm: fx.GraphModule, folds, before: fx.Node) -> list:
    """[we, be, wp, bp] constants with the layer norm's weight and bias folded into the expansion
    (we' = W1 diag(lw), be' = b1 + W1 lb) and the layer scale into the projection (wp' = diag(g)
    W2, bp' = g b2), as 1x1 convolution weights."""
    um, ub, lw, lb, dm, db, gamma = folds
    w1, w2 = um.weight.detach().clone(), dm.weight.detach().clone()
    b1 = constant_value(ub).clone() if ub is not None else torch.zeros(w1.shape[0], dtype=w1.dtype)
    b2 = constant_value(db).clone() if db is not None else torch.zeros(w2.shape[0], dtype=w2.dtype)
    if lb is not None:
        b1 = b1 + w1 @ constant_value(lb).to(w1.dtype)
    if lw is not None:
        w1 = w1 * constant_value(lw).to(w1.dtype)[None, :]
    if gamma is not None:
        g = gamma.reshape(-1).to(w2.dtype)
        w2, b2 = w2 * g[:, None], b2 * g
    values = (w1[:, :, None, None].contiguous(), b1, w2[:, :, None, None].contiguous(), b2)
    return [add_constant(gm, t, hint=f"{before.name}_{part}", before=before)
            for t, part in zip(values, ("expand_weight", "expand_bias", "project_weight", "project_bias"))]


def _depthwise(node):
    """(input, weight node, bias node, stride, [left, right, top, bottom], the input's reader) of a
    depthwise convolution (groups = channels, odd k, stride 1 or 2, dilation 1, constant weight and
    bias), its padding its own plus a zero constant_pad_nd before it that nothing else reads."""
    if not isinstance(node, fx.Node) or node.op != "call_function" or node.target is not aten.convolution.default:
        return None
    x, w, b, stride, padding, dilation, transposed, _, groups = node.args
    if transposed or not is_constant(w) or (b is not None and not is_constant(b)) or not isinstance(x, fx.Node):
        return None
    wv = constant_value(w)
    if wv.dim() != 4 or wv.shape[1] != 1 or groups != wv.shape[0] or wv.shape[2] != wv.shape[3] or wv.shape[2] % 2 != 1:
        return None
    if list(dilation) != [1, 1] or len(set(stride)) != 1 or stride[0] not in (1, 2):
        return None
    k, reader = wv.shape[2], node
    pads = [padding[1], padding[1], padding[0], padding[0]]
    if x.op == "call_function" and x.target is aten.constant_pad_nd.default and len(x.args[1]) == 4 \
            and (len(x.args) < 3 or x.args[2] == 0) and _only_reader(x, node) and isinstance(x.args[0], fx.Node):
        pads = [p + q for p, q in zip(pads, x.args[1])]
        reader, x = x, x.args[0]
    if any(not isinstance(p, int) or p < 0 or p >= k for p in pads):
        return None
    return x, w, b, stride[0], pads, reader


def _inverted(p: fx.Node) -> Found | None:
    """conv1x1(act2(dwconv(pad(act1(conv1x1(x)))))) ending at the projection `p`."""
    out = _tensor(p)
    if out is None or len(out.shape) != 4 or not _floating(out):
        return None
    found = _projection(p)
    if found is None:
        return None
    proj, d, act2, act2_args = found
    dw = _depthwise(d)
    if dw is None:
        return None
    h1 = dw[0]
    if not _only_reader(h1, dw[5]):
        return None
    e, act1, act1_args = _through_act(h1)
    exp = _one_by_one(e)
    if exp is None or not isinstance(exp[0], fx.Node):
        return None
    x = exp[0]
    hidden = constant_value(dw[1]).shape[0]
    if constant_value(exp[1]).shape[0] != hidden or constant_value(proj[1]).shape[1] != hidden:
        return None
    if act1 == "none" or act2 == "none":   # a plain conv chain, not an inverted block
        return None
    channels = constant_value(exp[1]).shape[1]
    k = constant_value(dw[1]).shape[2]
    macs = channels * hidden + hidden * k * k + hidden * constant_value(proj[1]).shape[0]
    return Found(INVERTED, x, [exp[1], exp[2], act1, act1_args, dw[1], dw[2], dw[3], dw[4], act2, act2_args,
                               proj[1], proj[2]], macs, hidden)


# -- the transformer MLP block ----------------------------------------------------------------

def _linear(node):
    """(input node read back through views, ProductMatch, bias node) of a product with a
    constant weight, else None."""
    node = _strip(node)
    if not isinstance(node, fx.Node):
        return None
    m = match_product(node)
    if m is None:
        return None
    x, _, bias = product_operands(node)
    return node, _strip(x), m, bias


def _norm(n: fx.Node, x: fx.Node):
    """("layer" | "rms" | "none", weight node, bias node, eps) when `n` is that norm of `x`."""
    if n is x:
        return "none", None, None, 0.0
    if n.op == "call_function" and n.target is operator.getitem and n.args[1] == 0:
        ln = n.args[0]
        if ln.op == "call_function" and ln.target is aten.native_layer_norm.default and ln.args[0] is x \
                and _only_reader(ln, n):
            shape, w, b, eps = ln.args[1:5]
            xt = _tensor(x)
            if len(shape) == 1 and shape[0] == xt.shape[-1] and all(v is None or is_constant(v) for v in (w, b)):
                return "layer", w, b, float(eps)
        return None
    # rms: mul(w, mul(x, rsqrt(add(mean(pow(x, 2), [-1], True), eps)))) in either order
    if n.target is not aten.mul.Tensor:
        return None
    a, b = n.args[:2]
    w, inner = (a, b) if is_constant(a) else (b, a) if is_constant(b) else (None, n)
    if inner is not n and (not isinstance(inner, fx.Node) or not _only_reader(inner, n)):
        return None
    if w is not None and constant_value(w).dim() != 1:
        return None
    if not isinstance(inner, fx.Node) or inner.target is not aten.mul.Tensor:
        return None
    p, q = inner.args[:2]
    r = q if p is x else p if q is x else None
    if not isinstance(r, fx.Node) or r.target is not aten.rsqrt.default or not _only_reader(r, inner):
        return None
    s = r.args[0]
    if s.target is not aten.add.Tensor or not isinstance(s.args[1], (int, float)) or not _only_reader(s, r):
        return None
    mean = s.args[0]
    if mean.target is not aten.mean.dim or list(mean.args[1]) not in ([-1], [len(_tensor(x).shape) - 1]) \
            or not (len(mean.args) > 2 and mean.args[2]) or not _only_reader(mean, s):
        return None
    sq = mean.args[0]
    if not (sq.target is aten.pow.Tensor_Scalar and sq.args[0] is x and sq.args[1] == 2) or not _only_reader(sq, mean):
        return None
    return "rms", w, None, float(s.args[1])


def _mlp_block(gm: fx.GraphModule, add: fx.Node) -> Found | None:
    out = _tensor(add)
    if out is None or len(out.shape) < 2 or not _floating(out):
        return None
    for x, v in (add.args[:2], add.args[1::-1]):
        if not isinstance(v, fx.Node) or not isinstance(x, fx.Node) or not _only_reader(v, add):
            continue
        xt = _tensor(x)
        if xt is None or not _same_shape(x, add) or xt.dtype != out.dtype:
            continue
        found = _mlp(x, v, add)
        if found is not None:
            return found
    return None


def _chain_below(top: fx.Node, bottom: fx.Node) -> bool:
    """Whether `bottom` is reached from `top` through pass-through ops (first arguments), each
    node below `top` read only by the one above it."""
    node = top
    while node is not bottom:
        if node.op != "call_function" or node.target not in PASS_THROUGH:
            return False
        below = node.args[0]
        if not isinstance(below, fx.Node) or not _only_reader(below, node):
            return False
        node = below
    return True


def _reaches_only(n: fx.Node, products: set) -> bool:
    """Whether every reader of `n`, through pass-through ops, is one of `products`."""
    for u in n.users:
        if u in products or u.target is aten.sym_size.int:
            continue
        if u.op != "call_function" or u.target not in PASS_THROUGH or not _reaches_only(u, products):
            return False
    return True


def _mlp(x: fx.Node, v: fx.Node, add: fx.Node) -> Found | None:
    down = _linear(v)
    if down is None or not _chain_below(v, down[0]):
        return None
    dnode, h, dm, db = down
    if not _chain_below(dnode.args[dm.x_index], h) or not _only_reader(_below(dnode.args[dm.x_index], h), dnode):
        return None
    # h = act(up(n)), or act(up(n)) * gate(n)
    h_act, gate = h, None
    if h.target is aten.mul.Tensor and len(h.args) == 2 and all(isinstance(a, fx.Node) for a in h.args):
        for a, b in (h.args, h.args[::-1]):
            if _through_act(a)[1] != "none" and _linear(b) is not None and _only_reader(a, h) \
                    and _only_reader(b, h) and a is not b:
                h_act, gate = a, b
                break
    e, act, act_args = _through_act(h_act)
    up = _linear(e)
    if up is None or not _chain_below(e, up[0]):
        return None
    unode, n, um, ub = up
    products = {unode}
    gm_ = gb = None
    if gate is not None:
        g = _linear(gate)
        if g is None or g[1] is not n or not _chain_below(gate, g[0]):
            return None
        gnode, _, gm_, gb = g
        products.add(gnode)
    norm = _norm(n, x)
    if norm is None or (norm[0] != "none" and not _reaches_only(n, products)):
        return None
    d = _tensor(x).shape[-1]
    if um.weight.shape[1] != d or dm.weight.shape[0] != d or dm.weight.shape[1] != um.weight.shape[0]:
        return None
    if gate is not None and tuple(gm_.weight.shape) != tuple(um.weight.shape):
        return None
    hidden = um.weight.shape[0]
    args = [norm[0], norm[1], norm[2], norm[3], um, ub, gm_, gb, act, act_args, dm, db]
    macs = (3 if gate is not None else 2) * d * hidden
    return Found(MLP, x, args, macs, hidden)


def _below(top: fx.Node, bottom: fx.Node) -> fx.Node:
    """The node `bottom`'s reader on the pass-through chain from `top` (top itself if top is bottom)."""
    node = top
    while node is not bottom and node.args[0] is not bottom:
        node = node.args[0]
    return node


# -- preference and rewrite --------------------------------------------------------------------

def _wanted(choices, add: fx.Node, found: Found) -> bool:
    if choices is None:
        return True
    t = _tensor(found.x)
    rows = 1
    lead = t.shape[:1] + t.shape[2:] if found.op is not MLP else t.shape[:-1]
    for dim in lead:
        rows = rows * dim if isinstance(dim, int) and rows is not None else None
    channels = t.shape[1] if found.op is not MLP else t.shape[-1]
    op = str(found.op).replace("fastc::", "fastc.").split(".default")[0]
    return choices.fuse_block(KernelFeatures(add.name, "block", "cpu", sizes={"M": rows, "N": channels,
                                                                             "K": found.hidden},
                                             ops=1, op_counts={op: 1}, dtype=str(t.dtype).replace("torch.", "")))


def _rewrite(gm: fx.GraphModule, add: fx.Node, found: Found) -> None:
    args = [found.x]
    for a in found.args:
        if hasattr(a, "weight") and hasattr(a, "weight_node"):   # a ProductMatch: its (out, in) weight
            a = _weight_constant(gm, a, add)
        if isinstance(a, tuple):   # ConvNeXt's layers to fold: [we, be, act, act_args, wp, bp] follow
            we, be, wp, bp = _convnext_weights(gm, a, add)
            rest = found.args[found.args.index(a) + 1:]
            args += [we, be, *rest, wp, bp]
            break
        args.append(a)
    with gm.graph.inserting_before(add):
        new = gm.graph.create_node("call_function", found.op, tuple(args), name=f"{add.name}_block")
    new.meta.update({k: add.meta[k] for k in KEPT_META if k in add.meta})
    add.replace_all_uses_with(new)
    gm.graph.erase_node(add)
    gm.graph.eliminate_dead_code()
    _sizes_from_input(gm, found.x)


def _sizes_from_input(gm: fx.GraphModule, x: fx.Node) -> None:
    """Each size read (sym_size.int) from a value no longer needed that equals one of the block
    input's sizes is read from the input instead, so the block's old ops can go."""
    shape = list(x.meta["val"].shape) if isinstance(x.meta.get("val"), torch.Tensor) else None
    for node in list(gm.graph.nodes):
        if node.target is not aten.sym_size.int or node.args[0] is x or not shape:
            continue
        source = node.args[0]
        if any(u.target is not aten.sym_size.int for u in source.users):
            continue
        value = source.meta.get("val")
        dim = node.args[1]
        if not isinstance(value, torch.Tensor) or not -value.dim() <= dim < value.dim():
            continue
        size = value.shape[dim]
        same = [i for i, s in enumerate(shape) if str(s) == str(size)]
        if same:
            node.update_arg(0, x)
            node.update_arg(1, same[0])


def _weight_constant(gm: fx.GraphModule, m, before: fx.Node) -> fx.Node:
    """A constant node holding `m.weight` (out, in) contiguous: the matched constant itself when
    it is that, else a new one."""
    value = constant_value(m.weight_node)
    if value.shape == m.weight.shape and value.is_contiguous() and value.data_ptr() == m.weight.data_ptr():
        return m.weight_node
    return add_constant(gm, m.weight.contiguous(), hint=f"{before.name}_weight", before=before)
