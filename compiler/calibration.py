"""From the user's calibration tuples (inputs as the model takes them) to a graph's inputs.

Dynamo lifts everything a graph reads into its inputs (the forward's arguments, parameters,
sizes), each with a source naming where it came from in the frame: `L['x']`,
`L['self']._modules['fc']._parameters['weight']`, `L['x'].size()[0]`. A calibration tuple binds
the forward's arguments (after `self` for a module); evaluating every input's source in that
binding gives the graph's inputs for it. Arguments a tuple leaves out keep the values of the call
being compiled.

Only a graph that starts where the model's forward starts can be reached this way; a graph that
starts after a graph break has inputs that are intermediate values, and its lossy passes are
left out (with the reason in the report).
"""
from __future__ import annotations

import builtins
import inspect
from dataclasses import dataclass
from typing import Callable

import torch
import torch.fx as fx

from .options import check_calibration


class Unreachable(Exception):
    """The calibration tuples cannot be turned into this graph's inputs (a reason, not an error)."""


@dataclass
class GraphCalibration:
    #: Per tuple, the Dynamo graph's inputs: the first half fits the passes, the rest measures.
    fit: list[list]
    held_out: list[list]
    #: A user's input tuple -> the Dynamo graph's inputs (for a callable metric's model).
    to_inputs: Callable[[tuple], list]


def graph_calibration(gm: fx.GraphModule, example_inputs: list, calibration) -> GraphCalibration:
    """Raises ValueError (naming the option) for a bad calibration set, Unreachable when this
    graph's inputs cannot be had from the model's inputs."""
    if callable(calibration):
        try:
            calibration = calibration()
        except Exception as e:
            raise ValueError(f"fastc option calibration: the callable raised {type(e).__name__}: {e}") from e
    tuples = check_calibration(calibration)
    to_inputs = _binder(gm, example_inputs)
    batches = []
    for i, t in enumerate(tuples):
        try:
            batch = to_inputs(t)
        except ValueError as e:
            raise ValueError(f"fastc option calibration[{i}] does not fit the model: {e}") from None
        batches.append(batch)
    half = (len(batches) + 1) // 2
    return GraphCalibration(batches[:half], batches[half:], to_inputs)


def _binder(gm: fx.GraphModule, example_inputs: list) -> Callable[[tuple], list]:
    from torch._dynamo.symbolic_convert import InstructionTranslator
    tx = InstructionTranslator.current_tx()
    if tx is None:
        raise Unreachable("the graph was not captured by torch.compile (no frame to bind inputs in)")
    code = tx.f_code
    if code.co_name.startswith("torch_dynamo_resume_in_"):
        raise Unreachable("the graph starts after a graph break, so the model's inputs do not reach it")
    f_locals, f_globals = dict(tx.f_locals), tx.f_globals
    names = list(code.co_varnames[:code.co_argcount])
    varargs = code.co_varnames[code.co_argcount + code.co_kwonlyargcount] if code.co_flags & inspect.CO_VARARGS else None
    if names and isinstance(f_locals.get(names[0]), torch.nn.Module):
        names = names[1:]  # self: the tuple holds what the model is called with
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    sources = []
    for n in placeholders:
        source = getattr(n.meta.get("grapharg"), "source", None)
        if source is None:
            raise Unreachable(f"graph input {n.name} has no source in the frame")
        sources.append(source.name)
    # Sizes as graph inputs: a dynamic graph, which takes other shapes.
    dynamic = any(not isinstance(x, torch.Tensor) for x in example_inputs)

    def to_inputs(t: tuple) -> list:
        if len(t) > len(names) and varargs is None:
            raise ValueError(f"it has {len(t)} inputs, and the model takes {len(names)} ({', '.join(names)})")
        if varargs is not None and len(t) != len(names) + len(f_locals.get(varargs, ())):
            called = len(names) + len(f_locals.get(varargs, ()))
            raise ValueError(f"it has {len(t)} inputs, and the model takes {called} (as it was called)")
        scope = {**f_locals, **dict(zip(names, t))}
        if varargs is not None:
            scope[varargs] = tuple(t[len(names):])
        values = []
        for source, example in zip(sources, example_inputs):
            try:
                value = eval(source, {"L": scope, "G": f_globals, "__builtins__": builtins})  # noqa: S307
            except Exception as e:
                raise ValueError(f"the graph input {source} cannot be read from it ({type(e).__name__}: {e})") from None
            values.append(_fitted(source, value, example, not dynamic))
        return values
    return to_inputs


def _fitted(source: str, value, example, same_shape: bool):
    """`value` as the graph input `example` stands for; a ValueError when it does not fit."""
    if (isinstance(example, torch.Tensor) and example.dim() == 0 and isinstance(value, (int, float))
            and not isinstance(value, bool)):
        # A Python number Dynamo passes as a 0-d tensor (a float attribute, dynamic=True).
        return torch.tensor(value, dtype=example.dtype, device=example.device)
    if isinstance(example, torch.Tensor):
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{source} is a {type(value).__name__}, the model was compiled for a tensor")
        if value.dtype != example.dtype or value.dim() != example.dim() or value.device != example.device:
            raise ValueError(f"{source} is {value.dtype} {list(value.shape)} on {value.device}, the model "
                             f"was compiled for {example.dtype} {list(example.shape)} on {example.device}")
        if same_shape and value.shape != example.shape:
            raise ValueError(f"{source} has shape {list(value.shape)}, and the graph was captured for "
                             f"{list(example.shape)} (give calibration inputs shaped like the model's "
                             "inputs, or compile with dynamic=True)")
    return value
