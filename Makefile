# pullgate — the targets the README documents.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: all build run test lint fmt deps clean

all: build

build:
	$(CARGO) build --release --locked

# Serve the webhook on https://127.0.0.1:8443 with self-signed dev certs (no cluster needed).
run:
	$(CARGO) run --release --locked -- serve --dev --tls-cert certs/dev/tls.crt --tls-key certs/dev/tls.key --listen 127.0.0.1:8443 --metrics-listen 127.0.0.1:9090

# What the tests need, each from its package registry, installed when missing:
# - docker-registry (Debian; CNCF distribution 2.8): the real registry the tests run;
# - promtool (Debian's prometheus package): `promtool check rules` / `test rules` for
#   manifests/components/monitoring. Only the promtool binary is unpacked into $(TOOLS):
#   installing the package would also start a Prometheus server on :9090 (`make run`'s
#   metrics port) on machines with systemd;
# - the SARIF 2.1.0 JSON schema, from the npm package of Microsoft's SARIF SDK, and the
#   jsonschema / check-jsonschema validators (PyPI) that check --output sarif and the
#   README's CI jobs (tests/it/ci_formats.rs).
# On a fresh machine `apt-get update` runs first.
TOOLS := target/tools
SARIF_SDK := @microsoft/sarif-multitool-ts@5.7.0
PY_TOOLS := jsonschema==4.26.0 check-jsonschema==0.39.0
APT_INSTALL = SUDO=$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo); \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends

deps:
	@if ! command -v docker-registry >/dev/null 2>&1; then \
		echo "installing docker-registry (Debian)"; \
		$(APT_INSTALL) docker-registry; \
	fi
	@if ! command -v promtool >/dev/null 2>&1 && [ ! -x $(TOOLS)/bin/promtool ]; then \
		echo "unpacking promtool from Debian's prometheus package into $(TOOLS)/bin"; \
		SUDO=$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo); \
		$$SUDO apt-get update -qq && \
		tmp=$$(mktemp -d) && chmod a+rwx $$tmp && (cd $$tmp && apt-get download prometheus >/dev/null) && \
		dpkg-deb -x $$tmp/prometheus_*.deb $$tmp/root && \
		mkdir -p $(TOOLS)/bin && cp $$tmp/root/usr/bin/promtool $(TOOLS)/bin/promtool && \
		rm -rf $$tmp; \
	fi
	@if [ ! -f $(TOOLS)/sarif/sarif-2.1.0.schema.json ]; then \
		echo "fetching the SARIF 2.1.0 schema ($(SARIF_SDK), npm)"; \
		command -v npm >/dev/null 2>&1 || { $(APT_INSTALL) npm; }; \
		tmp=$$(mktemp -d) && (cd $$tmp && npm pack --silent $(SARIF_SDK) >/dev/null) && \
		tar -xzf $$tmp/*.tgz -C $$tmp package/assets/sarif-2.1.0.schema.json && \
		mkdir -p $(TOOLS)/sarif && cp $$tmp/package/assets/sarif-2.1.0.schema.json $(TOOLS)/sarif/ && \
		rm -rf $$tmp; \
	fi
	@if [ ! -f $(TOOLS)/python/.installed ]; then \
		echo "installing $(PY_TOOLS) (PyPI) into $(TOOLS)/python"; \
		python3 -m pip --version >/dev/null 2>&1 || { $(APT_INSTALL) python3-pip; }; \
		python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target $(TOOLS)/python $(PY_TOOLS) && \
		touch $(TOOLS)/python/.installed; \
	fi

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# Unit and integration tests, linted as they are built: clippy-driver compiles the
# workspace's crates exactly as rustc does and runs clippy's lints on them (-D warnings, as
# `make lint`), so a fresh clone compiles its dependencies once instead of once for
# `cargo clippy` and again for the tests. The benchmark and the profile driver (examples/)
# are built (and linted) here but run only by `make bench` / `make profile`, so the test
# run closes on the tests' own result lines.
CLIPPY_BUILD = RUSTC_WORKSPACE_WRAPPER=clippy-driver CLIPPY_ARGS=-Dwarnings

test: deps
	$(CARGO) fmt --all -- --check
	$(CLIPPY_BUILD) $(CARGO) test --locked --lib --bins --tests --benches --examples --no-run
	$(CLIPPY_BUILD) $(CARGO) test --locked --lib --bins --tests

fmt:
	$(CARGO) fmt --all

# Go's own answers for the keyring's differential tests (tests/go → tests/data/go).
# Needs Go ≥ 1.27; make test does not: the tables are committed.
.PHONY: go-tables
GO ?= go
go-tables:
	cd tests/go && $(GO) run . ../data/go

clean:
	$(CARGO) clean

# --- Install and operate (manifests/README.md) ---
.PHONY: certs deploy image

IMAGE ?= ghcr.io/pullgate/pullgate:0.1.0
KUBECTL ?= kubectl
# Extra flags for `pullgate certs`, e.g. CERTS_FLAGS='--force --overlay manifests/overlays/enforce'.
CERTS_FLAGS ?=

# A CA, a serving certificate for pullgate.pullgate-system.svc and certs/kustomization.yaml
# (the audit overlay + Secret pullgate-tls + the webhook's caBundle). Refuses to overwrite.
certs:
	$(CARGO) run --release --locked -- certs $(CERTS_FLAGS)

# Install with static certificates: `make certs` unless certs/kustomization.yaml exists, then apply it.
deploy:
	@test -f certs/kustomization.yaml || $(MAKE) certs
	$(KUBECTL) apply -k certs

image:
	docker build -t $(IMAGE) .

# --- Hostile input: each cargo-fuzz target for FUZZ_SECONDS (on stable, without sanitizers) ---
.PHONY: fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := reference docker_config www_authenticate admission_review

fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@mkdir -p fuzz/corpus/admission_review
	@cp -n tests/data/admission-reviews/*.json fuzz/corpus/admission_review/ 2>/dev/null || true
	cd fuzz && for target in $(FUZZ_TARGETS); do \
		echo "== fuzz $$target ($(FUZZ_SECONDS)s)"; \
		$(CARGO) fuzz run --sanitizer none $$target -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -max_len=1048576 || exit 1; \
	done

# --- Profiles (BENCHMARKS.md, "Profiles") ---
.PHONY: profile

# The warm review in-process under callgrind (instruction counts: repeatable on a loaded
# machine): `examples/warm_review.rs` answers the captured `kubectl run` review
# PROFILE_REVIEWS times with its verdict cached, once through `Webhook::review` and once
# through the axum handler, and writes Ir per review and the top functions to PROFILE_OUT,
# which `make bench` copies into BENCHMARKS.md. Needs valgrind (Debian).
PROFILE_REVIEWS ?= 2000
PROFILE_OUT ?= benches/profiles/warm-review.md
PROFILE_TITLE ?= Now ($(shell git describe --always --dirty))
profile:
	@if ! command -v valgrind >/dev/null 2>&1; then \
		echo "installing valgrind (Debian)"; \
		$(APT_INSTALL) valgrind; \
	fi
	$(CARGO) build --release --locked --example warm_review
	mkdir -p target/profile $(dir $(PROFILE_OUT))
	for mode in review handler; do \
		valgrind --tool=callgrind --callgrind-out-file=target/profile/$$mode.callgrind \
			--collect-atstart=no --toggle-collect=warm_review::profiled_loop \
			target/release/examples/warm_review run $$mode $(PROFILE_REVIEWS) 2>target/profile/$$mode.log \
			|| { tail -20 target/profile/$$mode.log; exit 1; }; \
	done
	target/release/examples/warm_review report $(PROFILE_OUT) $(PROFILE_REVIEWS) "$(PROFILE_TITLE)" \
		target/profile/review.callgrind target/profile/handler.callgrind
	@echo "wrote $(PROFILE_OUT)"

# --- Benchmarks (BENCHMARKS.md) ---
.PHONY: bench

# The load generator and the in-process memory child are built without LTO (a shorter
# build); the server under test is the `cargo build --release` binary, copied aside because
# `cargo bench` rebuilds target/release/pullgate with the dev-dependencies' features.
BENCH_ENV ?= CARGO_PROFILE_BENCH_LTO=false CARGO_PROFILE_BENCH_CODEGEN_UNITS=16

# The release binary under load against real local registries: prints one table and
# rewrites BENCHMARKS.md. Needs Debian's docker-registry (deps) and skopeo.
bench: deps
	@if ! command -v skopeo >/dev/null 2>&1; then \
		echo "installing skopeo (Debian)"; \
		SUDO=$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends skopeo; \
	fi
	$(CARGO) build --release --locked
	mkdir -p target/bench && cp target/release/pullgate target/bench/pullgate
	$(BENCH_ENV) $(CARGO) bench --locked --bench webhook -- --pullgate-bin target/bench/pullgate

# --- Soak (not part of `make test` nor `make bench`) ---
.PHONY: soak
SOAK_SECONDS ?= 600

# The release `pullgate serve` for SOAK_SECONDS at an open-loop 2,000 reviews/s of mixed
# Pods while one registry flaps every 30 s; writes benches/results/soak.md and its section
# of BENCHMARKS.md (`make bench` keeps it). Every process it starts is stopped at the end.
soak: deps
	$(CARGO) build --release --locked
	mkdir -p target/bench && cp target/release/pullgate target/bench/pullgate
	$(BENCH_ENV) $(CARGO) bench --locked --bench webhook -- --pullgate-bin target/bench/pullgate --soak --seconds $(SOAK_SECONDS)
