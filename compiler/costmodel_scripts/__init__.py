"""The cost model's training scripts, `fastc costmodel collect | train | eval | show` (cli.py):
collect.py times every candidate of every kernel of some models (specs.py: which models) into a
Parquet dataset (dataset.py); train.py, evaluate.py and show.py drive fastc.costmodel.learned and
fastc.costmodel.evaluate on it."""
