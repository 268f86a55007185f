"""Layers import one way (STYLE.md §5): ir at the bottom; passes, costmodel and codegen above it
(codegen runs graph passes on a kernel's graph: the cpu target's legalisation for torch-mlir);
the compiler (backend, pipeline, CLI) on top; kernels stand alone at the bottom (any layer may
use them; they import nothing of fastc). Checked on the source: every
import of a fastc module, at module level or inside a function, is an edge of the module graph,
which must have no cycles, and no edge may go up a layer. `import fastc` must stay cheap."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"fastc.passes": "passes", "fastc.costmodel": "costmodel", "fastc.codegen": "codegen",
           "fastc.kernels": "kernels", "fastc": "compiler"}

# Which layers a layer may import (itself included).
ALLOWED = {
    "ir": {"ir", "kernels"},  # kernels register fastc's own ops (fastc.bcq_linear) the IR names
    "kernels": {"kernels"},
    "costmodel": {"costmodel", "ir", "kernels"},
    "passes": {"passes", "costmodel", "ir", "kernels"},
    "codegen": {"codegen", "passes", "costmodel", "ir", "kernels"},
    "compiler": {"compiler", "passes", "costmodel", "codegen", "ir", "kernels"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            if package == "fastc" and parts and parts[0] in ("passes", "costmodel", "codegen", "kernels"):
                continue
            found.setdefault(name, path)
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ("passes", "costmodel", "codegen", "kernels", "ir"):
        return parts[1]
    return "compiler"


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for t in targets:
            while t and t not in known:
                t = t.rsplit(".", 1)[0] if "." in t else ""
            if t and t != name:
                out.add(t)
    return out


def import_graph() -> nx.DiGraph:
    modules = _modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for target in _imports(name, path, set(modules)):
            graph.add_edge(name, target)
    return graph


def _ignoring_packages(graph: nx.DiGraph) -> nx.DiGraph:
    """Edges into a package's __init__ from its own modules (re-exports) are not cycles of code."""
    g = graph.copy()
    for a, b in list(g.edges):
        if a.startswith(b + "."):
            g.remove_edge(a, b)
    return g


def test_no_import_cycles():
    cycles = list(nx.simple_cycles(_ignoring_packages(import_graph())))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c + [c[0]]) for c in cycles[:10])


def test_layers_import_one_way():
    bad = [(a, b) for a, b in import_graph().edges if layer(b) not in ALLOWED[layer(a)]]
    assert not bad, "imports going up a layer: " + ", ".join(f"{a} -> {b}" for a, b in bad)


def test_import_fastc_is_cheap_and_kernels_stand_alone():
    code = ("import sys, fastc; heavy = [m for m in ('torch', 'fastc.capture', 'torch_mlir', 'triton') "
            "if m in sys.modules]; assert not heavy, heavy; import fastc.kernels.bcq; "
            "loaded = [m for m in ('fastc.capture', 'fastc.passes', 'fastc.codegen', 'torch_mlir', 'networkx', "
            "'torch._functorch.aot_autograd') if m in sys.modules]; assert not loaded, loaded")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
