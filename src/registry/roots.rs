//! Trust for registry TLS: the system roots plus `--registry-ca` (and a `hosts.toml` host's
//! own CAs). The system store — some 150 certificates, read from a bundle and a directory
//! — is loaded at the first TLS handshake that needs it rather than at start, so a
//! `pullgate check` of plain-HTTP registries never reads it. The verification itself is
//! rustls' `WebPkiServerVerifier` over the same roots as before; only its moment changes.

use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// The system roots and `extra`, verified with rustls' WebPKI verifier built on first use.
#[derive(Debug)]
pub(super) struct LazyRoots {
    extra: RootCertStore,
    provider: Arc<CryptoProvider>,
    /// `None` when there is no root at all: every certificate is then of an unknown issuer.
    verifier: OnceLock<Option<Arc<WebPkiServerVerifier>>>,
}

impl LazyRoots {
    /// `extra` is read and checked by the caller (a bad `--registry-ca` stops start-up).
    pub fn new(extra: RootCertStore, provider: Arc<CryptoProvider>) -> Self {
        Self {
            extra,
            provider,
            verifier: OnceLock::new(),
        }
    }

    /// Load the system roots now (a server does at start: its first review pays nothing).
    pub fn load(&self) {
        let _ = self.verifier();
    }

    fn verifier(&self) -> Option<&Arc<WebPkiServerVerifier>> {
        self.verifier
            .get_or_init(|| {
                let mut roots = RootCertStore::empty();
                // A missing or partly unreadable system store is not fatal: private
                // registries come with --registry-ca, and public ones fail with a clear
                // TLS error.
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
                roots.roots.extend(self.extra.roots.iter().cloned());
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                    .build()
                    .ok()
            })
            .as_ref()
    }
}

impl ServerCertVerifier for LazyRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.verifier() {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            // What WebPKI says with no trust anchor at all.
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_load_at_the_first_verification_and_refuse_an_unknown_issuer() {
        let roots = LazyRoots::new(RootCertStore::empty(), super::super::crypto_provider());
        // Not loaded yet: nothing read until a handshake (or a server) asks.
        assert!(roots.verifier.get().is_none());
        let cert = rcgen::generate_simple_self_signed(vec!["registry.test".to_string()])
            .expect("self-signed certificate");
        let name = ServerName::try_from("registry.test").expect("server name");
        let result = roots.verify_server_cert(cert.cert.der(), &[], &name, &[], UnixTime::now());
        assert!(result.is_err(), "{result:?}");
        assert!(
            roots.verifier.get().is_some(),
            "loaded by the first verification"
        );
    }
}
