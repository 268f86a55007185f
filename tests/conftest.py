"""Shared test setup: makes tests/ importable (model_zoo, opinfo_expected_failures) and prints the
table of model errors that tests/test_models.py records (also written to /tmp/fastc_model_errors.txt).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

ERRORS_FILE = "/tmp/fastc_model_errors.txt"


def pytest_terminal_summary(terminalreporter):
    model_zoo = sys.modules.get("model_zoo")
    rows = getattr(model_zoo, "ERROR_TABLE", None)
    if not rows:
        return
    lines = [f"{'model':<18} {'check':<28} {'max abs error':>14}"]
    lines += [f"{model:<18} {check:<28} {err:>14.3e}" for model, check, err in rows]
    terminalreporter.write_sep("-", "fastc vs eager, max abs error per model")
    for line in lines:
        terminalreporter.write_line(line)
    try:
        with open(ERRORS_FILE, "w") as f:
            f.write("\n".join(lines) + "\n")
    except OSError:
        pass
