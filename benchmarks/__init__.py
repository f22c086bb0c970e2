"""What ``make bench`` measures (``python -m benchmarks``, run from the repository root).

evaluations: candidate evaluations per second, each way of running a model, beside a NumPy reference;
gpu: cuda_standalone against cpp_standalone on batches that fill a GPU; workers: trials per second
with 1 and 2 local workers per storage. Not part of the installed package: the benchmarks read the
repository's studies and models and use the tests' references and PostgreSQL server.
"""
