"""Data the reference models train and are evaluated on; all of it ships with the machine:
scikit-learn's digits (digits.py) and the Python standard library's sources (stdlib_corpus.py)."""
