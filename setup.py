"""Maps the top-level folders onto one import package.

compiler/ is `fastc`; passes/, costmodel/, codegen/ and kernels/ are `fastc.passes`,
`fastc.costmodel`, `fastc.codegen` and `fastc.kernels`. Every folder with an __init__.py
below them is a subpackage, found here so that adding one needs no edit.
"""
from setuptools import find_packages, setup

FOLDERS = {"fastc": "compiler", "fastc.passes": "passes", "fastc.costmodel": "costmodel",
           "fastc.codegen": "codegen", "fastc.kernels": "kernels"}

packages, package_dir = [], {}
for name, folder in FOLDERS.items():
    package_dir[name] = folder
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(where=folder)]

setup(packages=packages, package_dir=package_dir)
