"""The Fashion-MNIST study (issue 12): plan and train runs, evaluate checkpoints, statistics, report.

``scripts/reproduce_fmnist.py`` is its command line.
"""
