"""The Triton BCQ kernels (run by Triton's interpreter) against the reference path and against
the dense matmul with the dequantized weight (PyTorch's linear)."""
import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "bcq_kernel_cases", Path(__file__).with_name("bcq_kernel_cases.py"))
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)


@pytest.mark.parametrize("case", cases.CASES, ids=[c[0] for c in cases.CASES])
def test_kernel_matches_reference_and_dense(case, bcq_interpreter_results):
    name, out_features, _, _, _, rows, _, dtype, _ = case
    result = bcq_interpreter_results[name]
    assert result["shape"] == [rows, out_features]
    assert result["dtype"] == f"torch.{dtype}"
    # fp32 accumulation in every path; an fp16 output is rounded to fp16 (relative 2^-11).
    if dtype == "float32":
        tolerance = 1e-5 * max(result["scale"], 1.0)
    else:
        tolerance = 2e-3 * result["scale"] + 1e-2
    assert result["err_reference"] <= tolerance, result
    assert result["err_dense"] <= tolerance, result
