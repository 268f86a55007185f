"""The text form round-trips for every graph fastc compiles for the test models.

For each graph (inference, forward, backward) of each model in tests/model_zoo.py:
print -> parse (with its constants) -> print gives the same text, and the parsed graph gives
exactly the outputs of the graph fastc runs, on the inputs it ran on. The debug dump of the same
compilation (`.fx` files and constants.safetensors) parses back to the same text as well.
The compilations come from the `compiled_zoo` fixture (tests/conftest.py), which records each
graph fastc runs and its inputs, and are shared with tests/test_models.py.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import model_zoo
from fastc.ir import parse_graph, print_graph

CONST_REF = re.compile(r"= const @([A-Za-z0-9_.]+)")


def _constants(gm: torch.fx.GraphModule) -> dict[str, torch.Tensor]:
    return {n.target: getattr(gm, n.target) for n in gm.graph.nodes if n.op == "get_attr"}


def _outputs(gm, inputs):
    with torch.no_grad():
        out = gm(*inputs)
    return out if isinstance(out, (list, tuple)) else (out,)


def check_round_trip(gm: torch.fx.GraphModule, inputs: list):
    text = print_graph(gm)
    parsed = parse_graph(text, _constants(gm))
    assert print_graph(parsed) == text
    expected, actual = _outputs(gm, inputs), _outputs(parsed, inputs)
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        torch.testing.assert_close(a, e, rtol=0, atol=0, equal_nan=True, msg=lambda m, i=i: f"output {i}: {m}")


def check_dump(graph_dir: Path, final_text: str) -> int:
    """Every dumped stage whose constants are in constants.safetensors parses back to its text;
    the last stage is the graph that runs. Returns how many files were checked."""
    files = sorted(graph_dir.glob("*.fx"))
    assert files, f"no .fx files in {graph_dir}"
    assert files[-1].read_text() == final_text, f"{files[-1]} is not the graph fastc runs"
    store = graph_dir / "constants.safetensors"
    constants = load_file(str(store)) if store.exists() else {}
    checked = 0
    for path in files:
        text = path.read_text()
        if not set(CONST_REF.findall(text)) <= set(constants):
            continue  # an earlier stage's weights, folded away before the dump of constants
        assert print_graph(parse_graph(text, constants)) == text, f"{path.name} does not round-trip"
        checked += 1
    return checked


@pytest.mark.parametrize("name, training", [
    *[(name, False) for name in model_zoo.BUILDERS],
    *[(name, True) for name in model_zoo.TRAINING],
], ids=lambda v: {False: "inference", True: "training"}.get(v, v) if isinstance(v, bool) else v)
def test_every_graph_round_trips(name, training, compiled_zoo):
    run = compiled_zoo(name, training)
    assert run.graphs, "fastc compiled no graph"
    graph_dirs = sorted(p for p in run.debug_dir.iterdir() if p.is_dir())
    assert len(graph_dirs) == len(run.graphs)
    kinds = set()
    for entry, graph_dir in zip(run.graphs, graph_dirs):
        kinds.add(graph_dir.name.split("_")[-1])
        assert entry["inputs"] is not None, f"{graph_dir.name} never ran"
        check_round_trip(entry["gm"], entry["inputs"])
        assert check_dump(graph_dir, print_graph(entry["gm"])) >= 1
    assert kinds == ({"forward", "backward"} if training else {"inference"})
