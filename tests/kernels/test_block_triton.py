"""The Triton block kernels (kernels/block_triton.py): run by Triton's interpreter against the
blocks' ATen references (kernels/blocks.py), compiled offline for sm_90, and their refusals.

The interpreted and the offline cases each run once per module in a child process
(block_triton_cases.py): the interpreter must be chosen before triton is imported, the offline
compiler needs it off.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

CASES_SCRIPT = Path(__file__).with_name("block_triton_cases.py")
_spec = importlib.util.spec_from_file_location("block_triton_cases", CASES_SCRIPT)
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)


def _run_cases(mode, out, env):
    done = subprocess.run([sys.executable, str(CASES_SCRIPT), mode, str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    return done, (json.loads(out.read_text()) if done.returncode == 0 else None)


@pytest.fixture(scope="module")
def interpreted(tmp_path_factory):
    pytest.importorskip("triton")
    out = tmp_path_factory.mktemp("block_triton_interpret") / "results.json"
    done, results = _run_cases("interpret", out, dict(os.environ, TRITON_INTERPRET="1"))
    if results is None:
        pytest.fail(f"interpreted block kernel cases failed (exit {done.returncode}):\n"
                    f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return results


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    pytest.importorskip("triton")
    out = tmp_path_factory.mktemp("block_triton_offline") / "results.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    done, results = _run_cases("offline", out, env)
    if results is None:
        pytest.skip(f"offline Triton compilation unavailable: {done.stderr[-800:]}")
    compiled = [r for name, r in results.items() if name in cases.OFFLINE]
    if not any(r == "ok" for r in compiled) and all("ptxas" in r or "backend" in r.lower() for r in compiled):
        pytest.skip(f"no NVIDIA toolchain for offline compilation: {compiled[0][:300]}")
    return results


@pytest.mark.parametrize("name", list(cases.CASES))
def test_kernel_matches_reference(name, interpreted):
    result = interpreted[name]
    op, dtype, _, _ = cases.CASES[name]
    assert result["shape"] == result["x_shape"]
    assert result["dtype"] == f"torch.{dtype}"
    assert result["finite"], result
    scale = result["scale"]
    # fp32 products without tf32: rounding only. Half types: the reference rounds every
    # intermediate to the half type, the kernel keeps fp32 between its products.
    tolerance = {"float32": 1e-4 * max(scale, 1.0), "float16": 2e-3 * scale + 1e-2,
                 "bfloat16": 1.6e-2 * scale + 2e-2}[dtype]
    assert result["err_reference"] <= tolerance, result
    assert result["err_fp32"] <= tolerance, result


@pytest.mark.parametrize("name", list(cases.OFFLINE))
def test_kernel_compiles_for_sm90(name, offline):
    assert offline[name] == "ok", offline[name]


def test_cpu_tensors_refused_outside_interpreter(offline):
    assert "interpreter" in offline["cpu_refused"], offline["cpu_refused"]


# -- refusals (no launch) -------------------------------------------------------------------------
def _problem(name, **changes):
    op, dtype, opts, _ = cases.CASES[name]
    x, params = cases.build(op, dtype, {**opts, **changes}, device="meta")
    return op, x, params


def _meta(*shape, dtype=torch.float32):
    return torch.empty(*shape, dtype=dtype, device="meta")


def _refusals():
    mlp = _problem("mlp_rms_silu_gate")
    conv = _problem("convfirst_g4_k3")
    mb = _problem("mbconv_relu6_4x4")
    nx = _problem("convnext_dw_k3_c24")

    def with_param(problem, index, value):
        op, x, params = problem
        params = list(params)
        params[index] = value
        return op, x, params

    return {
        "unknown_op": (("resnet_block", mlp[1], mlp[2]), "unknown block op"),
        "float64": (("mlp_block", mlp[1].double(), mlp[2]), "dtype"),
        "mlp_too_wide": (_problem("mlp_none_relu_d24", shape=(4, 2048), hidden=32), "2048"),
        "unknown_norm": (with_param(mlp, 0, "batch"), "norm"),
        "unknown_act": (with_param(mlp, 8, "mish"), "activation"),
        "hardtanh_args": (with_param(with_param(mlp, 8, "hardtanh"), 9, []), "arguments"),
        "w2_shape": (with_param(mlp, 10, _meta(24, 32)), "w2"),
        "param_dtype": (with_param(mlp, 4, _meta(64, 24, dtype=torch.float16)), "dtype"),
        "mlp_arity": (("mlp_block", mlp[1], mlp[2][:-1]), "arguments"),
        "even_kernel": (_problem("convfirst_g4_k3", k=4), "odd"),
        "groups_not_dividing": (with_param(conv, 2, 3), "groups"),
        "conv_out_channels": (with_param(conv, 0, _meta(32, 4, 3, 3)), "channels"),
        "too_many_channels": (_problem("convfirst_dw_k7", c=1024, groups=1024), "1024 channels"),
        "conv_x_not_nchw": (("convfirst_block", _meta(2, 16, 36), conv[2]), "NCHW"),
        "convnext_arity": (("convnext_block", nx[1], nx[2][:3] + nx[2][4:]), "arguments"),
        "convnext_eps": (with_param(nx, 3, "tiny"), "eps"),
        "convnext_even_kernel": (_problem("convnext_dw_k3_c24", k=4), "odd"),
        "convnext_out_channels": (with_param(nx, 0, _meta(48, 1, 3, 3)), "channels"),
        "mbconv_not_depthwise": (with_param(mb, 4, _meta(64, 2, 3, 3)), "wd"),
        "mbconv_expand_not_1x1": (with_param(mb, 0, _meta(64, 16, 3, 3)), "1x1"),
    }


REFUSALS = list(_refusals())


@pytest.mark.parametrize("case", REFUSALS)
def test_refusal_has_a_reason(case):
    pytest.importorskip("triton")
    from fastc.kernels.block_triton import BlockUnsupported, check_supported
    (op, x, params), reason = _refusals()[case]
    with pytest.raises(BlockUnsupported, match=reason):
        check_supported(op, x.shape, x.dtype, params)
    with pytest.raises(BlockUnsupported, match=reason):  # triton_block refuses before launching
        from fastc.kernels.block_triton import triton_block
        triton_block(op, x, *params)
    assert issubclass(BlockUnsupported, ValueError)


@pytest.mark.parametrize("name", list(cases.CASES))
def test_supported_problems_pass_the_check(name):
    pytest.importorskip("triton")
    from fastc.kernels.block_triton import check_supported
    op, x, params = _problem(name)
    check_supported(op, x.shape, x.dtype, params)
