"""OpInfo ops whose first float32 sample does not match eager through fastc, with the reason.

Keys are `op.name` or `op.name.variant_test_name`. tests/test_opinfo.py marks each key
xfail(strict=True). Regenerate with `python bench/opinfo_sweep.py`.
"""
EXPECTED_FAILURES: dict[str, str] = {}
