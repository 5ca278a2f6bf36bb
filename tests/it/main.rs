//! pullgate's integration tests, in one binary so that `make test` links once.
//!
//! Each module is one area of behaviour; [`support`] is the harness (real
//! `docker-registry` processes, a token issuer, fault proxies) they share.
//! Every server listens on 127.0.0.x and every process a test starts is stopped
//! through its own handle.

mod support;

mod admission_fixtures;
mod audit_cli;
mod certs_cli;
mod ci_formats;
mod cli_check;
mod egress_proxy;
mod fault_suite;
mod harness;
mod hostile_input;
mod keyring_fidelity;
mod kubectl_plugin;
mod manifest_fidelity;
mod manifests;
mod mirrors;
mod monitoring;
mod provider;
mod registry_verdicts;
mod round_trips;
mod scheduling;
mod secrecy;
mod ssrf_guard;
mod webhook_router;
mod webhook_tls;
