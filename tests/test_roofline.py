"""The roofline view: FLOPs and bytes per op and kernel (fastc.ir.work) against known values, the
machine-peak cache (checked before use), rows from a profile, and `fastc explain --roofline`."""
import json
import math
from types import SimpleNamespace

import pytest
import torch

import fastc.roofline as roofline
from fastc.cli import main
from fastc.ir import parse_graph
from fastc.ir.kernel_plan import KernelPlan
from fastc.ir.work import graph_work, op_flops
from fastc.roofline import Peak, Row, machine_peak, roofline_rows, roofline_text

GRAPH = """
graph @ops(%x: f32[4, 8], %img: f32[2, 3, 10, 10], %q: f32[2, 4, 16, 8], %k: f32[2, 4, 32, 8], %v: f32[2, 4, 32, 8]) {
  %w: f32[8, 16] = const @w
  %b: f32[16] = const @b
  %cw: f32[6, 3, 3, 3] = const @cw
  %mm: f32[4, 16] = aten.mm.default(%x, %w)
  %addmm: f32[4, 16] = aten.addmm.default(%b, %x, %w)
  %conv: f32[2, 6, 8, 8] = aten.convolution.default(%img, %cw, none, [1, 1], [0, 0], [1, 1], false, [0, 0], 1)
  %attn: (f32[2, 4, 16, 8], f32[2, 4, 16]) = aten._scaled_dot_product_flash_attention_for_cpu.default(%q, %k, %v)
  %add: f32[4, 16] = aten.add.Tensor(%mm, %addmm)
  %view: f32[64] = aten.view.default(%add, [64])
  %total: f32[] = aten.sum.default(%view)
  return (%conv, %attn, %total)
}
"""


def _nodes():
    constants = {"w": torch.full((8, 16), 0.5), "b": torch.ones(16), "cw": torch.full((6, 3, 3, 3), 0.25)}
    gm = parse_graph(GRAPH, constants)
    return gm, {n.name: n for n in gm.graph.nodes}


def test_flops_of_known_ops():
    _, n = _nodes()
    assert op_flops(n["mm"]) == 2 * 4 * 16 * 8
    assert op_flops(n["addmm"]) == 2 * 4 * 16 * 8 + 4 * 16
    assert op_flops(n["conv"]) == (2 * 6 * 8 * 8) * (2 * 3 * 3 * 3)
    assert op_flops(n["attn"]) == 4 * (2 * 4) * 16 * 32 * 8
    assert op_flops(n["add"]) == 4 * 16
    assert op_flops(n["view"]) == 0
    assert op_flops(n["total"]) == 64  # one per element of its largest input


def test_graph_work_rows_per_kernel_and_per_kind_of_aten_op():
    gm, n = _nodes()
    n["add"].meta["kernel"] = 0
    n["add"].meta["kernel_kind"] = "pointwise"
    rows = {r["name"]: r for r in graph_work(gm)}
    (kernel,) = KernelPlan.of(gm).kernels
    assert rows[kernel.name] == {"name": kernel.name, "kind": "kernel", "ops": 1, "flops": 64,
                                 "bytes": 3 * 4 * 16 * 4}  # reads mm and addmm, writes add
    assert rows["aten::mm"] == {"name": "aten::mm", "kind": "aten", "ops": 1, "flops": 1024,
                                "bytes": (4 * 8 + 8 * 16 + 4 * 16) * 4}
    assert rows["aten::convolution"]["flops"] == op_flops(n["conv"])
    assert "aten::view" not in rows  # views move nothing


def _fake_probes(monkeypatch, flops=1e11, bandwidth=2e10):
    calls = {"n": 0}

    def probe_flops():
        calls["n"] += 1
        return flops
    monkeypatch.setattr(roofline, "_probe_flops", probe_flops)
    monkeypatch.setattr(roofline, "_probe_bandwidth", lambda: bandwidth)
    return calls


def test_machine_peak_is_probed_once_and_cached(tmp_path, monkeypatch):
    calls = _fake_probes(monkeypatch)
    first = machine_peak(cache=tmp_path)
    again = machine_peak(cache=tmp_path)
    assert calls["n"] == 1 and again == first
    assert first.flops == 1e11 and first.bandwidth == 2e10 and first.threads == torch.get_num_threads()
    machine_peak(cache=tmp_path, refresh=True)
    assert calls["n"] == 2


@pytest.mark.parametrize("damage", [
    "not json at all",
    json.dumps(["a", "list"]),
    "entry-nan",
    "entry-other-machine",
])
def test_a_damaged_or_foreign_peak_entry_is_measured_again(tmp_path, monkeypatch, caplog, damage):
    calls = _fake_probes(monkeypatch)
    peak = machine_peak(cache=tmp_path)
    path = tmp_path / roofline.PEAK_FILE
    entries = json.loads(path.read_text())
    key = next(iter(entries))
    if damage == "entry-nan":
        entries[key]["flops"] = float("nan")
        path.write_text(json.dumps(entries))
    elif damage == "entry-other-machine":
        entries[key]["machine"] = "another machine"
        path.write_text(json.dumps(entries))
    else:
        path.write_text(damage)
    again = machine_peak(cache=tmp_path)
    assert calls["n"] == 2, "the damaged entry was used"
    assert again.flops == peak.flops and math.isfinite(again.flops)
    if damage.startswith("entry"):
        assert "ignoring the cached machine peak" in caplog.text


def test_rows_from_a_profile_and_their_fraction_of_the_roof():
    peak = Peak(flops=100e9, bandwidth=10e9, machine="m", threads=2)
    profile = SimpleNamespace(
        kernels=[SimpleNamespace(graph=0, name="k0_pointwise", how="native", calls=1, ms=0.5),
                 SimpleNamespace(graph=0, name="k9_missing", how="ATen", calls=1, ms=0.1)],
        ops=[SimpleNamespace(name="aten::mm", calls=2, ms=2.0), SimpleNamespace(name="aten::view", calls=5, ms=0.01)])
    reports = [SimpleNamespace(graph_id=0, work=[
        {"name": "k0_pointwise", "kind": "kernel", "ops": 3, "flops": 1_000_000, "bytes": 4_000_000},
        {"name": "aten::mm", "kind": "aten", "ops": 2, "flops": 100_000_000, "bytes": 1_000_000}])]
    rows = roofline_rows(profile, reports)
    assert [r.name for r in rows] == ["aten::mm", "g0.k0_pointwise"]  # slowest first; unknown rows left out
    mm, k0 = rows
    assert mm.intensity == 100 and mm.gflops == pytest.approx(50.0)
    assert mm.of_roof(peak) == pytest.approx(0.5)          # compute bound: 50 of 100 GFLOP/s
    assert k0.intensity == 0.25 and k0.gbytes == pytest.approx(8.0)
    assert k0.of_roof(peak) == pytest.approx(2.0 / 2.5)    # roof at 0.25 FLOP/B: 2.5 GFLOP/s
    text = roofline_text(rows, peak)
    assert "aten::mm" in text and "g0.k0_pointwise" in text and "ridge at 10.0" in text


def test_explain_roofline_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FASTC_CACHE_DIR", str(tmp_path / "cache"))
    _fake_probes(monkeypatch)
    plot = tmp_path / "roof.png"
    assert main(["explain", "--roofline", "mlp", "--calls", "2", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    from fastc.report import REPORTS
    report = REPORTS[-1]
    timed = [w["name"] for w in report.work if w["kind"] == "kernel"]
    assert timed, "the mlp has planned kernels"
    for name in timed:
        assert f"g{report.graph_id}.{name}" in out
    assert "machine peak (measured): 100.0 GFLOP/s" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv,phrase", [
    (["explain", "mlp", "--plot", "x.png"], "--plot goes with --roofline"),
    (["explain", "--roofline", "--profile", "mlp"], "--roofline takes no"),
    (["explain", "--roofline", "nosuchmodel"], "unknown model 'nosuchmodel'"),
])
def test_explain_roofline_mistakes(capsys, argv, phrase):
    assert main(argv) == 2
    assert phrase in capsys.readouterr().err
