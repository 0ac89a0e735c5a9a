# The two commands of the README. Each sets up .venv/ from nothing on first use and is
# quick afterwards (the install reruns only when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test lint protos bench replay-demo prometheus

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

## The main job: a short DQN training on CartPole, on a local Ray started for it.
run: $(STAMP)
	$(VENV)/bin/shoal train --algo dqn --env CartPole-v1 --actors 2 --envs-per-actor 4 \
		--total-env-steps 100000 --target-return 195

## The replay service alone: a server process, a client that inserts, samples, updates.
replay-demo: $(STAMP)
	$(VENV)/bin/shoal replay-demo

## Every test, from nothing (Debian's prometheus too, for the test that scrapes a run).
test: $(STAMP) prometheus
	$(VENV)/bin/python -m pytest

## A stock Prometheus binary on the PATH; its test is skipped, saying so, where apt-get
## cannot install it.
prometheus:
	@command -v prometheus >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then APT=apt-get; else APT="sudo -n apt-get"; fi; \
		($$APT update -qq && DEBIAN_FRONTEND=noninteractive $$APT install -y -qq \
			--no-install-recommends prometheus) >/dev/null 2>&1 \
		|| echo "prometheus could not be installed: its test will be skipped"; }

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .

## Regenerates protos/*_pb2*.py from protos/*.proto (tests fail while they are stale).
protos: $(STAMP)
	$(VENV)/bin/python -m shoal.protos.generate

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/replay_throughput.py --quick
