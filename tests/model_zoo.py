"""The backend tests' view of the one model zoo, fastc_eval.zoo (evaluation/zoo.py): its test
models under the names the test files import, and the table of errors the tests record.

    model, inputs = model_zoo.build("gpt2")     # inputs: a dict of keyword arguments
    out = model_zoo.main_output(model(**inputs))
"""
from fastc_eval.models.small import MLP, AttentionBlock, ConvBN
from fastc_eval.zoo import TESTS, TRAINING, build, main_output, randomize_batchnorm

#: The models every backend test runs over, by name.
BUILDERS = TESTS

#: Rows (model, check, max abs error) that the tests add; tests/conftest.py prints them.
ERROR_TABLE: list[tuple[str, str, float]] = []

__all__ = ["BUILDERS", "ERROR_TABLE", "TRAINING", "AttentionBlock", "ConvBN", "MLP", "build", "main_output",
           "randomize_batchnorm"]
