"""recalibrate-batchnorm: re-estimates inference BatchNorm statistics on calibration inputs (lossy)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx

from fastc.ir.constants import add_constant, constant_value, is_constant

from .base import Pass, register
from .context import PassContext
from .fold_batchnorm import _inference_batch_norm_args


@register
@dataclass(frozen=True)
class RecalibrateBatchNorm(Pass):
    """Re-estimates each inference BatchNorm's running mean and variance on calibration inputs.

    The new statistics are the per-channel mean and unbiased variance of the batch norm's input
    over the calibration inputs (ctx.calibration_inputs, else the example inputs). The graph runs
    on all calibration batches together, op by op; at each batch norm the new statistics are set
    before it runs, so later layers see the earlier layers' new statistics (as training-mode
    re-estimation does, but with whole-data statistics). Legal for eval-mode batch norm whose
    statistics are constants; run it before fold-batchnorm, which removes them. Lossy: the
    statistics then describe the calibration data. After a rewrite that shifts the activations
    (prune-magnitude) that wins back accuracy; on an unchanged model it adds sampling noise.
    Without inputs (fastc-opt) it changes nothing. Costs one run of the graph on the calibration
    data, holding every batch's live values at once.
    """
    name = "recalibrate-batchnorm"
    exact = False

    def run(self, gm: fx.GraphModule, ctx: PassContext) -> int:
        batches = ctx.inputs_for_fitting()
        norms = {n for n in gm.graph.nodes if _recalibratable(n)}
        if not batches or not norms or any(n.op in ("call_module", "call_method") for n in gm.graph.nodes):
            return 0
        nodes = list(gm.graph.nodes)
        last_use = {a: i for i, n in enumerate(nodes) for a in n.all_input_nodes}
        placeholders = [n for n in nodes if n.op == "placeholder"]
        envs = [dict(zip(placeholders, batch)) for batch in batches]
        done = 0
        with torch.no_grad():
            for i, node in enumerate(nodes):
                if node.op in ("placeholder", "output"):
                    continue
                if node in norms:
                    done += _recalibrate(gm, node, [env[node.args[0]] for env in envs])
                for env in envs:
                    env[node] = _evaluate(node, env)
                for a in node.all_input_nodes:
                    if last_use.get(a) == i:
                        for env in envs:
                            env.pop(a, None)
        return done


def _recalibratable(node: fx.Node) -> bool:
    args = _inference_batch_norm_args(node)
    return args is not None and is_constant(args[3]) and is_constant(args[4])


def _recalibrate(gm: fx.GraphModule, bn: fx.Node, inputs: list[torch.Tensor]) -> int:
    """Sets bn's statistics from its inputs (one tensor per batch, channels in dimension 1)."""
    dims = [d for d in range(inputs[0].dim()) if d != 1]
    count = sum(x.numel() // x.shape[1] for x in inputs)
    if count < 2:
        return 0
    mean = sum(x.double().sum(dims) for x in inputs) / count
    shape = [1, -1] + [1] * (inputs[0].dim() - 2)
    var = sum(((x.double() - mean.view(shape)) ** 2).sum(dims) for x in inputs) / (count - 1)
    old_mean, old_var = bn.args[3], bn.args[4]
    new_mean = add_constant(gm, mean.to(constant_value(old_mean).dtype), hint=f"{bn.name}_mean", before=bn)
    new_var = add_constant(gm, var.to(constant_value(old_var).dtype), hint=f"{bn.name}_var", before=bn)
    bn.args = (*bn.args[:3], new_mean, new_var, *bn.args[5:])
    for old in {old_mean, old_var}:
        if not old.users:
            gm.graph.erase_node(old)
    return 1


def _evaluate(node: fx.Node, env: dict):
    if node.op == "get_attr":
        return constant_value(node)

    def value(a):
        return constant_value(a) if is_constant(a) else env[a]
    args = fx.node.map_arg(node.args, value)
    kwargs = fx.node.map_arg(node.kwargs, value)
    return node.target(*args, **kwargs)
