# One entry point for people and CI. Every target installs what it needs.
#   make test   unit + end-to-end tests against a real local control plane
#   make demo   local control plane + edge-sched + reporters + pods, results printed
#   make bench  every benchmark at full size (docs/benchmarks.md); bench/results.json
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: test unit e2e demo bench bench-quick dist deps kube-binaries system-packages clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

deps: $(STAMP) system-packages kube-binaries

# Debian packages the tests run for real: Prometheus (live-load tests), Chromium (status-page tests),
# systemd-analyze (exposure score of the units; Debian's images usually have it).
system-packages:
	@command -v prometheus >/dev/null && command -v chromium >/dev/null && command -v systemd-analyze >/dev/null || { \
	  echo "installing Debian packages: prometheus chromium systemd"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus chromium systemd >/dev/null; }

# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok
# from pinned Go modules; ~10 min the first time on 2 cores, cached after.
kube-binaries:
	@tests/cluster/build-binaries.sh >/dev/null

test: deps
	$(PY) -m pytest -q

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

e2e: deps
	$(PY) -m pytest -q tests/e2e

demo: deps
	$(PY) -m tests.cluster.demo

# Benchmarks (docs/benchmarks.md): full size takes a while and wants a quiet machine;
# bench-quick runs each at small sizes to check that everything works.
bench: deps
	$(PY) -m bench

bench-quick: deps
	$(PY) -m bench --quick

# Single-file executable for edge hosts (docs/deployment.md, "Single-file executable"): a shiv
# zipapp of the daemon and every dependency, native wheels (numpy, ...) for this machine's platform
# and Python version included, so the host needs that python3.X and nothing else.  The shebang
# names that version; pyc files are compiled when it first unpacks (the units set
# PYTHONDONTWRITEBYTECODE).  pip builds the wheel in build/, removed before (a module deleted from
# edge_sched/ would stay in it) and after.  Another output path: make dist DIST_OUT=/tmp/x.pyz
DIST_OUT ?= dist/edge-sched.pyz
dist: $(STAMP)
	@mkdir -p $(dir $(DIST_OUT))
	rm -rf build
	pyver=$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])') && \
	  $(VENV)/bin/shiv --console-script edge-sched --compile-pyc --python "/usr/bin/env python$$pyver" \
	    --output-file $(DIST_OUT) --quiet .
	rm -rf build
	@ls -l $(DIST_OUT)

clean:
	rm -rf $(VENV) build dist *.egg-info
