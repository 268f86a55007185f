"""Tiny BCQ kernel cases, run by Triton's interpreter in a child process.

Triton decides interpreter-or-compiler when `triton` is first imported (its own library
functions such as tl.sum are jitted then), so TRITON_INTERPRET=1 must be set before that import
and holds for the whole process. Setting it inside a pytest process would also turn every other
folder's kernels into interpreted ones, or come too late if another folder imported triton first.
So conftest.py runs this file as `python bcq_kernel_cases.py OUT.json` with TRITON_INTERPRET=1,
and the tests read the errors it writes. Importing this module (for CASES) does not import triton.
"""
import json
import sys

# (name, out_features, in_features, group_size, bits, rows, kernel, dtype, bias)
CASES = [
    ("gemv_b2_g32", 48, 64, 32, 2, 1, "gemv", "float32", True),
    ("lut_b2_g32", 48, 64, 32, 2, 1, "gemv_lut", "float32", True),
    ("gemv_b3_g32_ragged_n", 40, 96, 32, 3, 2, "gemv", "float32", False),
    ("lut_b3_g32_ragged_n", 40, 96, 32, 3, 2, "gemv_lut", "float32", False),
    ("gemv_b4_g64", 64, 128, 64, 4, 1, "gemv", "float32", True),
    ("lut_b4_g64", 64, 128, 64, 4, 1, "gemv_lut", "float32", True),
    ("gemv_b1_g128", 72, 128, 128, 1, 1, "gemv", "float32", True),
    ("gemv_b3_fp16", 48, 128, 64, 3, 1, "gemv", "float16", True),
    ("gemm_b2_g32", 48, 64, 32, 2, 5, "gemm", "float32", False),
    ("gemm_b3_g32_bias", 40, 96, 32, 3, 17, "gemm", "float32", True),
    ("gemm_b4_g64", 64, 128, 64, 4, 8, "gemm", "float32", True),
    ("gemm_b1_g128", 72, 128, 128, 1, 20, "gemm", "float32", False),
    ("gemm_b3_fp16", 48, 128, 64, 3, 9, "gemm", "float16", True),
    ("auto_rows1", 48, 64, 32, 2, 1, None, "float32", True),
    ("auto_rows9", 48, 64, 32, 2, 9, None, "float32", True),
]


def run_case(name, out_features, in_features, group_size, bits, rows, kernel, dtype, bias):
    import torch

    from fastc.kernels.bcq import bcq_linear, bcq_quantize, dequantize, pack, reference_linear

    generator = torch.Generator().manual_seed(sum(map(ord, name)))
    weight = torch.randn(out_features, in_features, generator=generator)
    packed = pack(bcq_quantize(weight, bits, group_size, rounds=3))
    x = torch.randn(rows, in_features, generator=generator).to(getattr(torch, dtype))
    b = torch.randn(out_features, generator=generator) if bias else None
    y = bcq_linear(x, packed, b, backend="triton", kernel=kernel)
    reference = reference_linear(x, packed, b)
    dense = torch.nn.functional.linear(x.float(), dequantize(packed), b)
    return {"dtype": str(y.dtype), "shape": list(y.shape),
            "scale": float(dense.abs().max()),
            "err_reference": float((y.float() - reference).abs().max()),
            "err_dense": float((y.float() - dense).abs().max())}


def main(out_path):
    import triton
    if not triton.knobs.runtime.interpret:
        raise SystemExit("bcq_kernel_cases.py needs TRITON_INTERPRET=1 in its environment")
    import torch
    torch.set_num_threads(1)
    results = {case[0]: run_case(*case) for case in CASES}
    with open(out_path, "w") as handle:
        json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
