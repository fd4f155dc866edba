# Quick start: `make run` (llmux on config.toml + the bundled mock provider), `make test`.
VENV := .venv
MOCK_LISTEN ?= 127.0.0.1:9100

.PHONY: run test venv lint verify-unit deps bench bench-smoke bench-cluster release-pgo

run:
	cargo build --release --workspace --bins
	@target/release/llmux-mock --listen $(MOCK_LISTEN) & MOCK=$$!; \
	trap "kill $$MOCK 2>/dev/null" EXIT INT TERM; \
	target/release/llmux --config config.toml

$(VENV)/.installed: requirements-test.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $@

venv: $(VENV)/.installed

# System packages the integration tests drive for real (Debian names); installed when missing.
APT_DEPS := redis-server chromium
deps:
	@missing=""; for p in $(APT_DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

tests/node/node_modules/.installed: tests/node/package-lock.json
	npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
	touch $@

tests/ui/node_modules/.installed: tests/ui/package-lock.json
	npm ci --prefix tests/ui --no-audit --no-fund --loglevel=error
	touch $@

test: deps $(VENV)/.installed tests/node/node_modules/.installed tests/ui/node_modules/.installed
	cargo test --workspace --all-targets

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

# systemd-analyze verify needs ExecStart to exist: check a copy pointing at the built binary.
verify-unit:
	cargo build --bin llmux
	@tmp=$$(mktemp -d); sed "s|/usr/local/bin/llmux|$$PWD/target/debug/llmux|" systemd/llmux.service > $$tmp/llmux.service; \
	systemd-analyze verify $$tmp/llmux.service; rc=$$?; rm -rf $$tmp; exit $$rc

# The profile-guided release build (~30 minutes; BENCHMARKS.md, run AH): target/pgo/release/llmux.
release-pgo:
	bash bench/pgo.sh

# Side-by-side load benchmark (≤ 10 minutes; see BENCHMARKS.md) and its few-second smoke mode.
bench:
	bash bench/run.sh

# LLMUX_BIN_DIR means run.sh builds nothing: build the debug binaries of both packages here.
bench-smoke:
	cargo build --workspace --bins
	BENCH_TARGET_DIR=$(CURDIR)/target/bench LLMUX_BIN_DIR=$(CURDIR)/target/debug bash bench/run.sh --smoke

bench-cluster:
	bash bench/cluster.sh
