# Every target sets up .venv itself; the install step is idempotent (a stamp
# file re-runs it only when a pyproject, setup.py, one of tamer's C extensions or this Makefile changed).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: venv test test-tamer test-faithful attack lint demo bench clean-venv

venv: $(STAMP)

$(STAMP): packages/tamer/pyproject.toml packages/tamer/setup.py $(wildcard packages/tamer/src/tamer/*.[ch] packages/tamer/src/tamer/_blake3/*.[ch]) packages/faithful/pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# The CPU wheel first: an unpinned `torch` would download a multi-GB CUDA build.
	$(BIN)/pip install -q 'torch==2.13.0'
	$(BIN)/pip install -q -e 'packages/tamer[test]' -e 'packages/faithful[torch,test,report,fast,ray]' ruff mypy
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check packages bench scripts
	$(BIN)/ruff format --check packages bench scripts
	$(BIN)/mypy --strict packages/tamer/src/tamer
	$(BIN)/mypy --strict packages/faithful/src/faithful

# Integration tests need a Docker engine binary; ensure-docker installs Debian's
# docker.io when run as root and says loudly why it can't otherwise.
test: lint
	bash scripts/ensure-docker.sh
	$(BIN)/python -m pytest packages/tamer/tests packages/faithful/tests

test-tamer: $(STAMP)
	$(BIN)/python -m pytest packages/tamer/tests

# The long attack campaigns: many more kills and hostile archives than `make test`'s bounded sizes.
attack: $(STAMP)
	bash scripts/ensure-docker.sh
	TAMER_CAMPAIGN_KILLS=$${TAMER_CAMPAIGN_KILLS:-200} TAMER_ATTACK_EXAMPLES=$${TAMER_ATTACK_EXAMPLES:-3000} \
	  $(BIN)/python -m pytest packages/tamer/tests/integration/test_fault_campaign.py \
	  packages/tamer/tests/integration/test_restore_attack.py

test-faithful: $(STAMP)
	$(BIN)/python -m pytest packages/faithful/tests

demo: $(STAMP)
	bash scripts/ensure-docker.sh
	$(BIN)/python scripts/demo.py

bench: $(STAMP)
	bash scripts/ensure-docker.sh
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
