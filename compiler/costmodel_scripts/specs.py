"""What `fastc costmodel collect --models SPEC` collects: the models a SPEC names, checked.

A SPEC is `FILE.py:FUNCTION` (FUNCTION() returns an iterable of `(name, torch.nn.Module,
example_inputs_tuple)`; with `--batch N` it is called as FUNCTION(batch=N)) or the name of a
bundled model set (SETS: zoo models, inputs passed positionally in the order the zoo gives them).

Every model is a `Job` (plain data a Dask worker can rebuild the model from: the file's path and
the function's name, or the zoo model's name) and, for FILE.py:FUNCTION, the model itself (the
function is called here to check what it returns before anything is collected). Models run as
given: call .eval() in FUNCTION to collect the kernels of inference.
"""
from __future__ import annotations

import importlib.util
import inspect
import os
from dataclasses import dataclass, field

import torch

from fastc.command_input import CommandError

#: Bundled model sets (fastc_eval.zoo names, built when collected): CNNs and transformers, each
#: collected in 5-20 s on a 2-core EPYC (gpt2: 11 s, 3 distinct kernels); `tiny`: two very small
#: ones, for tests and CI.
SETS = {
    "bundled": ("mlp", "conv_bn", "attention_block", "cnn", "gpt", "gpt2", "llama", "bert", "vit",
                "resnet", "convnext", "mobilenet_v2"),
    "tiny": ("mlp", "conv_bn"),
}


@dataclass(frozen=True)
class Job:
    """One model to collect, as data a Dask worker can rebuild it from."""
    name: str
    spec: str                 # the --models argument it came from (for messages)
    file: str | None = None   # FILE.py:FUNCTION: the file's absolute path ...
    function: str | None = None  # ... and the function's name
    zoo: str | None = None    # a bundled set: the zoo model's name
    batch: int | None = None


@dataclass
class Entry:
    job: Job
    model: object = field(default=None, repr=False)   # built here (None: build(job) when collected)
    inputs: tuple | None = field(default=None, repr=False)


def entries(specs: list[str], batch: int | None = None) -> list[Entry]:
    """The models every SPEC names, in order; CommandError for a bad SPEC or a repeated name."""
    out: list[Entry] = []
    seen: dict[str, str] = {}
    for spec in specs:
        for entry in _entries(spec, batch):
            name = entry.job.name
            if name in seen:
                raise CommandError(f"--models {spec}: model name {name!r} was already given by --models {seen[name]}")
            seen[name] = spec
            out.append(entry)
    return out


def _entries(spec: str, batch: int | None) -> list[Entry]:
    if spec in SETS:
        return [Entry(Job(name, spec, zoo=name, batch=batch)) for name in SETS[spec]]
    if ":" not in spec:
        raise CommandError(f"--models {spec}: expected FILE.py:FUNCTION or a bundled set "
                           f"({', '.join(SETS)})")
    path, function = spec.rsplit(":", 1)
    items = call_function(os.path.abspath(path), function, batch, spec)
    return [Entry(Job(name, spec, file=os.path.abspath(path), function=function, batch=batch), model, inputs)
            for name, model, inputs in items]


def call_function(path: str, function: str, batch: int | None, spec: str) -> list[tuple]:
    """FUNCTION(batch=...) of the file at `path`, its items checked: [(name, module, inputs)]."""
    if not os.path.exists(path):
        raise CommandError(f"--models {spec}: no such file {path}")
    if not os.path.isfile(path):
        raise CommandError(f"--models {spec}: {path} is a directory, not a Python file")
    module_name = "fastc_costmodel_models_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_")
    import_spec = importlib.util.spec_from_file_location(module_name, path)
    if import_spec is None:
        raise CommandError(f"--models {spec}: {path} is not a Python file (expected FILE.py)")
    module = importlib.util.module_from_spec(import_spec)
    try:
        import_spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - the user's file: any error is a message naming it
        raise CommandError(f"--models {spec}: importing {path} failed: {type(e).__name__}: {e}") from None
    fn = getattr(module, function, None)
    if fn is None:
        defined = sorted(n for n, v in vars(module).items() if inspect.isfunction(v) and v.__module__ == module_name)
        raise CommandError(f"--models {spec}: {path} defines no {function!r} "
                           f"(functions it defines: {', '.join(defined) or 'none'})")
    if not callable(fn):
        raise CommandError(f"--models {spec}: {function!r} in {path} is {_a(fn)}, not a function")
    kwargs = {} if batch is None else {"batch": batch}
    try:
        result = fn(**kwargs)
    except TypeError as e:
        if batch is not None and "batch" in str(e):
            raise CommandError(f"--models {spec}: --batch was given but {function}() takes no batch argument") from None
        raise CommandError(f"--models {spec}: {function}() failed: TypeError: {e}") from None
    except Exception as e:  # noqa: BLE001
        raise CommandError(f"--models {spec}: {function}() failed: {type(e).__name__}: {e}") from None
    return check_items(result, spec, function)


def check_items(result, spec: str, function: str) -> list[tuple]:
    """`result` as a list of (name, module, inputs tuple); CommandError naming what is wrong."""
    expected = "(name, torch.nn.Module, example_inputs_tuple)"
    if isinstance(result, (str, bytes, dict, torch.nn.Module, torch.Tensor)) or not _iterable(result):
        raise CommandError(f"--models {spec}: {function}() returned {_a(result)}, "
                           f"expected an iterable of {expected}")
    items = []
    for i, item in enumerate(result):
        where = f"--models {spec}: item {i} of {function}()"
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            what = f"{_a(item)} of {len(item)}" if isinstance(item, (tuple, list)) else _a(item)
            raise CommandError(f"{where} is {what}, expected {expected}")
        name, model, inputs = item
        if not isinstance(name, str) or not name or name.startswith(".") or any(c in name for c in "/\\\0"):
            raise CommandError(f"{where}: the name {name!r} is not usable as a file name "
                               "(a non-empty string without '/' or '\\', not starting with '.')")
        if not isinstance(model, torch.nn.Module):
            raise CommandError(f"{where} ({name}): the model is {_a(model)}, expected a torch.nn.Module")
        if isinstance(inputs, list):
            inputs = tuple(inputs)
        if not isinstance(inputs, tuple):
            hint = " (write (x,) for one input)" if isinstance(inputs, torch.Tensor) else ""
            raise CommandError(f"{where} ({name}): the example inputs are {_a(inputs)}, "
                               f"expected a tuple{hint}")
        items.append((name, model, inputs))
    if not items:
        raise CommandError(f"--models {spec}: {function}() returned no models")
    return items


def build(job: Job) -> tuple:
    """(module, inputs tuple) of `job`, built where this runs (a Dask worker)."""
    if job.zoo is not None:
        return build_zoo(job.zoo, job.batch)
    for name, model, inputs in call_function(job.file, job.function, job.batch, job.spec):
        if name == job.name:
            return model, inputs
    raise CommandError(f"--models {job.spec}: {job.function}() no longer returns a model called {job.name!r}")


def build_zoo(name: str, batch: int | None = None) -> tuple:
    """(module, inputs tuple) of the zoo model `name`: the zoo's keyword inputs become positional."""
    from fastc_eval import zoo

    model, kwargs = zoo.build(name, batch=batch)
    return KeywordInputs(model.eval(), tuple(kwargs)), tuple(kwargs.values())


class KeywordInputs(torch.nn.Module):
    """A zoo model called with positional inputs, model(**dict(zip(keys, inputs))), returning
    its main output (the logits of a Hugging Face model)."""

    def __init__(self, model: torch.nn.Module, keys: tuple):
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, *inputs):
        from fastc_eval.zoo import main_output
        return main_output(self.model(**dict(zip(self.keys, inputs))))


def _a(value) -> str:
    """'a list', 'an int': the type of `value` with its article."""
    name = type(value).__name__
    return ("an " if name[0].lower() in "aeiou" else "a ") + name


def _iterable(x) -> bool:
    try:
        iter(x)
    except TypeError:
        return False
    return True
