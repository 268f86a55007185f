"""OpInfo ops whose first float32 sample does not match eager through fastc, with the reason.

Keys are `op.name` or `op.name.variant_test_name` for the forward sweep, and the same with a
prefix for the other sweeps: "grad:" for gradients (FASTC_OPINFO_GRAD=1), "triton:" for generated
Triton, "cpu:" for native CPU code. tests/test_opinfo.py marks each key xfail(strict=True).
Regenerate with `python bench/opinfo_sweep.py --write-table` (and `--grad`, `--target cpu`).
"""
EXPECTED_FAILURES: dict[str, str] = {
}
