# syntax=docker/dockerfile:1
# pullgate: `make image` (docker build -t ghcr.io/pullgate/pullgate:0.1.0 .).

# --- build ---
FROM rust:1.95-bookworm AS builder
WORKDIR /src

# Dependencies first, in a layer rebuilt only when Cargo.toml or Cargo.lock change: build
# them against an empty crate, then drop that crate's own artifacts.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src target/release/pullgate target/release/deps/pullgate-* \
        target/release/deps/libpullgate-* target/release/.fingerprint/pullgate-*

# Then the crate itself (touch: COPY keeps the context's mtimes, which may be older than
# the empty crate's build).
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && cp target/release/pullgate /pullgate

# --- run ---
# glibc, libgcc and CA certificates (registries' TLS), no shell; the nonroot variant runs
# as 65532, which the manifests' securityContext (runAsUser 65532) expects.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /pullgate /pullgate
USER 65532:65532
# 8443: HTTPS POST /validate; 9090: /healthz, /readyz, /metrics.
EXPOSE 8443 9090
ENTRYPOINT ["/pullgate"]
CMD ["serve"]
