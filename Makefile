# deliver — developer and CI entry points.
#   make check  style, types and import contracts (ruff, mypy, import-linter); needs only the venv
#   make test   install + make check + unit tests + e2e tests (what .ci/run does); prints the ten
#               slowest tests of each phase and each phase's wall time
#   make demo   install + the scripted demo on the local control plane
#   make bench  the analysis benchmark, the fail-fast benchmark, the forecast calibration and the
#               controller benchmark against Argo Rollouts, full length (long: not part of make test;
#               make test runs the fail-fast and controller --quick forms)
#   make image  the controller image, an OCI archive in dist/ (docs/install.md)
#   make release  the release in dist/release/: wheel, sdist, image archive and digest, the chart
#               pinned to that digest, a CycloneDX SBOM, the krew plugin, SHA256SUMS (docs/release.md)
#   make chaos  chaos on the local control plane, full run (e2e/chaos.py; figures in docs/chaos.md;
#               long: make test runs the short version, e2e/test_chaos.py), then the hostile-namespace
#               test (e2e/hostile.py; figures in docs/security.md; short version e2e/test_hostile.py)
# Time budget of make test (2 cores): fresh machine, every Go build and the image included, under
# 60 minutes; warm caches under 35 minutes (measured: 31.5 after issues 23-24; unit 274 s, e2e 1,285 s). Longer runs go behind their own targets (bench, chaos).
# Needs: Go (builds the control-plane binaries once, cached in ~/.cache/deliver/bin),
# Python 3.11 with venv + pip, and apt as root (for Debian's prometheus, if it is missing).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
PYTEST := $(VENV)/bin/pytest
# pytest options for every test phase: the ten slowest tests, so the time budget stays visible
DURATIONS := --durations=10

# $(call timed,NAME,COMMAND): run COMMAND, then print NAME's wall time (also when it fails)
timed = @start=$$(date +%s); $(2); rc=$$?; \
	echo "== $(1): $$(( $$(date +%s) - start ))s wall (exit $$rc)"; exit $$rc

.PHONY: install venv system-packages binaries peer check unit e2e test demo bench chaos cluster-up cluster-down clean distclean release

install: venv system-packages binaries peer

# The venv is (re)installed when pyproject.toml or constraints.txt changes; the stamp keeps warm runs
# fast. pyproject.toml has ranges, constraints.txt the exact versions tested (python -m e2e.constraints).
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) uninstall -q -y deliver 2>/dev/null || true  # the distribution's name before deliver-k8s
	$(PIP) install -q -c constraints.txt -e '.[test]'
	touch $@

# Only what the project runs: Debian's prometheus recommends prometheus-node-exporter, which pulls
# its collectors (systemd timers, smartmontools, nvme-cli, ipmitool, ...); tests start their own
# prometheus on 127.0.0.1 and scrape only the project's processes (docs/local-cluster.md).
APT_LEAN := --no-install-recommends

system-packages:
	@if command -v prometheus >/dev/null 2>&1 || test -x /usr/bin/prometheus; then \
	  echo "prometheus: $$(command -v prometheus || echo /usr/bin/prometheus)"; \
	else \
	  echo "installing Debian's prometheus package (without its recommends)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(APT_LEAN) prometheus; \
	fi
	@command -v openssl >/dev/null 2>&1 || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(APT_LEAN) openssl)
	@command -v buildah >/dev/null 2>&1 && command -v mmdebstrap >/dev/null 2>&1 || \
	  (echo "installing Debian's buildah and mmdebstrap (make image, e2e/test_image.py)"; apt-get update -q && \
	   DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(APT_LEAN) buildah mmdebstrap)
	@test -x /usr/bin/chromium && test -x /usr/bin/chromedriver || \
	  (echo "installing Debian's chromium and chromium-driver (the dashboard's browser tests, e2e/test_dashboard.py)"; \
	   apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(APT_LEAN) chromium chromium-driver)

binaries: venv
	$(PY) -m e2e.binaries

# The controller benchmark's peer: the Argo Rollouts controller built from its Go module (on the
# go1.27.3 toolchain its go.mod asks for), cached in ~/.cache/deliver/bin (docs/performance.md).
peer: venv
	$(PY) -m e2e.binaries --only argo-rollouts

# The controller image as an OCI archive, built without a container daemon (buildah, chroot
# isolation, vfs storage; a Debian base made by mmdebstrap unless BASE=<image from a registry>):
# dist/deliver-<version>.oci.tar, cached in ~/.cache/deliver/image by a hash of its inputs.
.PHONY: image
image: venv system-packages
	$(call timed,make image,$(PY) -m e2e.image $(if $(BASE),--base $(BASE)))

# The release, reproducibly (every time stamp the last commit's, SOURCE_DATE_EPOCH) and offline once
# `make install` ran and the image is cached (e2e/release.py; docs/release.md). KREW_URL: where the
# krew archive will be served ({version} replaced); BASE as for make image.
release: venv system-packages
	$(PY) -m e2e.binaries --only helm
	$(call timed,make release,$(PY) -m e2e.release $(if $(BASE),--base $(BASE)) $(if $(KREW_URL),--url '$(KREW_URL)'))

# Fast (seconds) and offline: no cluster, no binaries. Configuration in pyproject.toml.
# Runs every tool, so one pass shows every problem; fails if any tool failed.
check: venv
	@status=0; \
	for tool in "ruff check ." "ruff format --check ." "mypy" "lint-imports --no-logo"; do \
	  echo "--- $$tool"; $(VENV)/bin/$$tool || status=1; \
	done; \
	exit $$status

unit: venv
	$(call timed,unit tests,$(PYTEST) tests -q $(DURATIONS))

e2e: venv
	$(call timed,e2e tests,$(PYTEST) e2e -q $(DURATIONS))

test: install
	$(MAKE) --no-print-directory check
	$(call timed,make test (unit + e2e),$(MAKE) --no-print-directory unit && $(MAKE) --no-print-directory e2e)
	$(call timed,fail-fast benchmark (quick),$(PY) -m benchmarks.failfast --quick)
	$(call timed,controller benchmark (quick),$(PY) -m benchmarks.controller --quick)

bench: venv binaries peer
	$(call timed,analysis benchmark,$(PY) -m benchmarks.analysis)
	$(call timed,fail-fast benchmark,$(PY) -m benchmarks.failfast)
	$(call timed,forecast calibration,$(PY) -m benchmarks.forecast)
	$(call timed,controller benchmark,$(PY) -m benchmarks.controller)

# The demo needs no peer: not the whole of install.
demo: venv system-packages binaries
	$(PY) -m e2e.demo

chaos: install
	$(call timed,chaos (full),$(PY) -m e2e.chaos --out run/chaos.md)
	$(call timed,hostile namespace (full),$(PY) -m e2e.hostile --out run/hostile.md)

cluster-up: install
	$(PY) -m e2e.cluster up

cluster-down:
	test -x $(PY) && $(PY) -m e2e.cluster down || true

# Only this tree's default cluster and clusters of dead pytest sessions: a pytest session
# running right now (run/e2e-<its pid>) is left alone.
clean: cluster-down
	test -x $(PY) && $(PY) -m e2e.cluster reap || true
	rm -rf run/cluster .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .grimp_cache
	-rmdir run 2>/dev/null
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
