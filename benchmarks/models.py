"""Exports the real-model zoo (see sdflow/zoo.py): python benchmarks/models.py [NAME ...] [--reduced]."""
import sys

from sdflow.zoo import main

sys.exit(main())
