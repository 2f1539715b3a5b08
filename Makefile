# The two entry points of the README. Both set everything up first (scripts/setup.sh is idempotent).
.PHONY: demo test setup

setup:
	./scripts/setup.sh

demo: setup
	.venv/bin/python examples/transformer.py

test:
	./scripts/setup.sh test
	.venv/bin/python -m pytest -n 2 -q
