# Two commands on a fresh machine (Debian 12, as root or with sudo):
#   make demo   installs what is missing, replays the bundled demo, prints the dashboard URL
#   make test   installs what is missing, runs the whole test suite
#   make lint   ruff and mypy (CI runs it before the tests)
VENV     ?= .venv
PY       := $(VENV)/bin/python
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PKGS := tshark chromium iproute2 redis-server python3-venv
STAMP    := $(VENV)/.installed

.PHONY: demo test lint install system-deps bench clean

demo: install
	$(VENV)/bin/mip6mon demo

test: install
	$(PY) -m pytest -q -p no:cacheprovider

# ruff (pyproject [tool.ruff]) on the whole tree, mypy --strict on keys/ and dissectors/
lint: install
	$(PY) -m ruff check .
	$(PY) -m mypy

install: system-deps $(STAMP)

# tshark's post-install asks about setuid dumpcap; pre-seed the answer so it never blocks
# (PLATFORM-NOTES: otherwise apt can end with exit code 100 on a locked debconf).
system-deps:
	@missing=""; \
	for bin in tshark chromium ip redis-server; do command -v $$bin >/dev/null || missing="$$missing $$bin"; done; \
	python3 -c 'import venv, ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages ($$missing )"; \
	  echo 'wireshark-common wireshark-common/install-setuid boolean false' | $(SUDO) debconf-set-selections; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $(APT_PKGS) || true; \
	  $(SUDO) dpkg --configure -a; \
	  for bin in tshark chromium ip redis-server; do command -v $$bin >/dev/null || { echo "missing $$bin after install"; exit 1; }; done; \
	fi

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

bench: install
	$(PY) benchmarks/bench_report.py
	$(PY) benchmarks/bench_latency.py

clean:
	rm -rf $(VENV) build *.egg-info
