"""``python -m hamgan.train`` (also what ``torchrun ... -m hamgan.train`` runs on every rank)."""

import sys

from hamgan.train.cli import main

sys.exit(main())
