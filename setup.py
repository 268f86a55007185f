"""Maps the top-level folders onto import packages.

compiler/ is `fastc`; passes/, costmodel/, codegen/ and kernels/ are `fastc.passes`,
`fastc.costmodel`, `fastc.codegen` and `fastc.kernels`. evaluation/ is its own package,
`fastc_eval` (the model zoo, the reference models with their data, weights and training, the
accuracy harness), so the compiler holds no weights. Every folder with an __init__.py below them
is a subpackage, found here so that adding one needs no edit.
"""
from setuptools import find_packages, setup

FOLDERS = {"fastc": "compiler", "fastc.passes": "passes", "fastc.costmodel": "costmodel",
           "fastc.codegen": "codegen", "fastc.kernels": "kernels", "fastc_eval": "evaluation"}

packages, package_dir = [], {}
for name, folder in FOLDERS.items():
    package_dir[name] = folder
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(where=folder)]

setup(packages=packages, package_dir=package_dir)
