# Tweeter — every target bootstraps its own virtual environment on first use.
PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PORT   ?= 13000
DB     ?= tracker.db

.PHONY: run test soak lint sample demo diagrams bench sim clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)            ## the tracker on the default port
	$(VPY) tracker.py $(PORT) --db $(DB)

test: $(STAMP)           ## the whole suite (what CI runs); its tracker soak lasts 5 s
	$(VPY) -m pytest

soak: $(STAMP)           ## the tracker soak alone, for SOAK seconds (default 600)
	TWEETER_SOAK_SECONDS=$(or $(SOAK),600) $(VPY) -m pytest -q tests/test_hardening.py -k soak

lint: $(STAMP)
	$(VPY) -m ruff check .

demo: $(STAMP)           ## the course demo in one terminal; writes tools/demo.md (HOSTS=1, as root: a host per process)
	$(VPY) tools/demo.py$(if $(filter-out 0,$(HOSTS)), --hosts)

diagrams: $(STAMP)       ## regenerate every diagram from real runs: tools/demo.md, PROTOCOL.md's (and tools/demo-hosts.md as root)
	$(VPY) tools/demo.py --quiet
	@if [ "$$(id -u)" = 0 ] && command -v ip > /dev/null; then $(VPY) tools/demo.py --quiet --hosts; \
	 else echo "tools/demo-hosts.md left as it is: make demo HOSTS=1 needs root and ip"; fi
	$(VPY) tools/protocol_diagrams.py

bench: $(STAMP)          ## the SPEC §9 figures, each beside its baseline
	$(VPY) tools/bench.py

sim: $(STAMP)            ## the ring's deterministic simulation: SEED=n replays one run, SEEDS=n runs many
	$(VPY) -m tests.simulation $(if $(SEED),--seed $(SEED),--seeds $(or $(SEEDS),1000))

sample: $(STAMP)         ## regenerate Sample.txt from the standard ttweet scenario
	$(VPY) tools/sample.py Sample.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
