"""The Fashion-MNIST study (issue 12): plan and train runs, evaluate checkpoints, statistics, report.

Not part of the installed ``hamgan`` package: run it from the repository root as
``python -m studies.fmnist32.reproduce`` (``make study``).
"""
