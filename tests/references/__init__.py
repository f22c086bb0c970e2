"""NumPy simulations of the shipped models, written independently of Brian2: the checks that a model
file's batched network computes what it should, and the CPU baselines of the benchmarks (``python -m benchmarks``)."""
