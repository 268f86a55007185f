# lit configuration for fastc's IR tests: `lit lit_tests` (scripts/test.sh runs it).
import os
import shutil
import sys

import lit.formats

config.name = "fastc"
config.test_format = lit.formats.ShTest()
config.suffixes = [".fx", ".py"]
config.excludes = ["lit.cfg.py", "Output"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.test_source_root, "Output")

bindir = os.path.dirname(sys.executable)


def tool(name):
    path = os.path.join(bindir, name)
    if os.path.exists(path):
        return path
    found = shutil.which(name)
    if not found:
        lit_config.fatal(f"{name} not found next to {sys.executable} or on PATH: run scripts/setup.sh")
    return found


# Longest first: lit substitutes in order.
config.substitutions.append(("%fastc-opt", tool("fastc-opt")))
config.substitutions.append(("%fastc", tool("fastc")))
config.substitutions.append(("%PYTHON", sys.executable))
config.substitutions.append(("filecheck", tool("filecheck")))
config.environment["PYTHONHASHSEED"] = "0"
for var in ("HOME", "TMPDIR", "TRITON_INTERPRET", "FASTC_CACHE_DIR"):
    if var in os.environ:
        config.environment[var] = os.environ[var]
