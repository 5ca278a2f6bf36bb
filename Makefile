# pullgate — the targets the README documents.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: all build run test lint fmt deps clean

all: build

build:
	$(CARGO) build --release --locked

# Serve the webhook on https://127.0.0.1:8443 with self-signed dev certs (no cluster needed).
run:
	$(CARGO) run --release --locked -- serve --dev --listen 127.0.0.1:8443 --metrics-listen 127.0.0.1:9090

# What the tests need: the real registry (Debian's docker-registry, CNCF distribution 2.8).
deps:
	@if ! command -v docker-registry >/dev/null 2>&1; then \
		echo "installing docker-registry (Debian)"; \
		SUDO=$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends docker-registry; \
	fi

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

test: deps lint
	$(CARGO) test --locked --all-targets

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
