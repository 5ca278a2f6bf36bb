//! The serving certificate, re-read when its files' content changes. A Kubernetes secret
//! volume swaps a `..data` symlink rather than writing the files, so a path watcher misses
//! it; comparing content on an interval does not.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::metrics::Metrics;

/// A zero interval would spin (and tokio refuses it): reloads are at least this far apart.
const MIN_RELOAD_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("certificate and key do not form a usable pair: {0}")]
    Key(rustls::Error),
}

/// Serves the current certificate; [`ReloadingCert::reload_if_changed`] swaps it.
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The bytes the current key was built from.
    loaded: Mutex<(Vec<u8>, Vec<u8>)>,
    /// Told the leaf's notAfter at each load (`pullgate_serving_certificate_…`).
    metrics: OnceLock<Arc<Metrics>>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn certified_key(
    provider: &CryptoProvider,
    cert_path: &Path,
    cert: &[u8],
    key_path: &Path,
    key: &[u8],
) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: cert_path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::Pem {
        path: key_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(TlsError::Key)
}

impl ReloadingCert {
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert = read(cert_path)?;
        let key = read(key_path)?;
        let ck = certified_key(&provider, cert_path, &cert, key_path, &key)?;
        Ok(Arc::new(Self {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            provider,
            current: RwLock::new(Arc::new(ck)),
            loaded: Mutex::new((cert, key)),
            metrics: OnceLock::new(),
        }))
    }

    /// The serving certificate's notAfter, in Unix seconds, as loaded now.
    pub fn not_after(&self) -> Option<i64> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current.cert.first().and_then(|leaf| not_after(leaf))
    }

    /// Report the certificate's expiry to `metrics` now and at every reload.
    pub fn report_expiry_to(&self, metrics: Arc<Metrics>) {
        let _ = self.metrics.set(metrics);
        self.report_expiry();
    }

    fn report_expiry(&self) {
        match (self.metrics.get(), self.not_after()) {
            (Some(m), Some(t)) => m.set_certificate_expiry(t),
            (Some(_), None) => {
                tracing::warn!(cert = %self.cert_path.display(), "cannot read notAfter of the serving certificate")
            }
            _ => {}
        }
    }

    /// Re-read both files; swap when their content changed and forms a valid pair.
    /// `Ok(true)` when swapped. On error the current certificate stays in service.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let cert = read(&self.cert_path)?;
        let key = read(&self.key_path)?;
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.0 == cert && loaded.1 == key {
            return Ok(false);
        }
        let ck = certified_key(&self.provider, &self.cert_path, &cert, &self.key_path, &key)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ck);
        *loaded = (cert, key);
        drop(loaded);
        self.report_expiry();
        Ok(true)
    }

    /// Check for new content every `interval` (at least every 100 ms apart) until the
    /// task is dropped.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        let interval = interval.max(MIN_RELOAD_INTERVAL);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match this.reload_if_changed() {
                    Ok(true) => {
                        tracing::info!(cert = %this.cert_path.display(), "serving certificate reloaded")
                    }
                    Ok(false) => {}
                    // A half-written rotation: keep serving the old pair, try again later.
                    Err(e) => tracing::warn!(error = %e, "serving certificate not reloaded"),
                }
            }
        })
    }

    /// A rustls server config serving this certificate with ALPN h2 and http/1.1.
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, rustls::Error> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// One DER element starting `der`: (tag, content, rest). Definite lengths only, as DER is.
fn der_element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let bytes = usize::from(first & 0x7f);
        if bytes == 0 || bytes > 4 || rest.len() < bytes {
            return None;
        }
        let (len, after) = rest.split_at(bytes);
        rest = after;
        len.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b))
    };
    if rest.len() < length {
        return None;
    }
    let (content, rest) = rest.split_at(length);
    Some((tag, content, rest))
}

/// The notAfter of an X.509 certificate (RFC 5280 §4.1: Certificate → tbsCertificate →
/// [version], serialNumber, signature, issuer, validity { notBefore, notAfter }), as Unix
/// seconds. UTCTime years 50–99 are 19xx (§4.1.2.5.1); GeneralizedTime carries all four.
pub fn not_after(der: &[u8]) -> Option<i64> {
    const SEQUENCE: u8 = 0x30;
    let (SEQUENCE, certificate, _) = der_element(der)? else {
        return None;
    };
    let (SEQUENCE, mut tbs, _) = der_element(certificate)? else {
        return None;
    };
    if tbs.first() == Some(&0xa0) {
        tbs = der_element(tbs)?.2;
    }
    for _ in 0..3 {
        tbs = der_element(tbs)?.2; // serialNumber, signature, issuer
    }
    let (SEQUENCE, validity, _) = der_element(tbs)? else {
        return None;
    };
    let after_not_before = der_element(validity)?.2;
    let (tag, time, _) = der_element(after_not_before)?;
    let text = std::str::from_utf8(time).ok()?.strip_suffix('Z')?;
    if !text.is_ascii() {
        return None;
    }
    let digits = |s: &str| -> Option<u32> {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, rest) = match (tag, text.len()) {
        (0x17, 12) => {
            let yy = i32::try_from(digits(&text[..2])?).ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        (0x18, 14) => (i32::try_from(digits(&text[..4])?).ok()?, &text[4..]),
        _ => return None,
    };
    let field = |i: usize| digits(rest.get(i..i + 2)?);
    let month = time::Month::try_from(u8::try_from(field(0)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(year, month, u8::try_from(field(2)?).ok()?).ok()?;
    let at = time::Time::from_hms(
        u8::try_from(field(4)?).ok()?,
        u8::try_from(field(6)?).ok()?,
        u8::try_from(field(8)?).ok()?,
    )
    .ok()?;
    Some(
        time::PrimitiveDateTime::new(date, at)
            .assume_utc()
            .unix_timestamp(),
    )
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};
    use rstest::rstest;

    fn certificate_until(year: i32, month: u8, day: u8) -> Vec<u8> {
        let mut params = CertificateParams::new(vec!["pullgate.test".to_string()]).expect("params");
        params.not_after = rcgen::date_time_ymd(year, month, day);
        let key = KeyPair::generate().expect("key");
        params
            .self_signed(&key)
            .expect("self-signed")
            .der()
            .to_vec()
    }

    #[rstest]
    #[case::utc_time(2031, 5, 17, 1_936_742_400)]
    #[case::last_utc_time_year(2049, 12, 31, 2_524_521_600)]
    #[case::generalized_time_from_2050(2051, 1, 2, 2_556_230_400)]
    fn not_after_is_read_from_the_certificate(
        #[case] year: i32,
        #[case] month: u8,
        #[case] day: u8,
        #[case] unix: i64,
    ) {
        assert_eq!(not_after(&certificate_until(year, month, day)), Some(unix));
    }

    #[rstest]
    #[case::empty(&[])]
    #[case::not_a_sequence(&[0x04, 0x00])]
    #[case::length_past_the_end(&[0x30, 0x82, 0xff, 0xff, 0x30])]
    #[case::length_of_five_bytes(&[0x30, 0x85, 1, 1, 1, 1, 1])]
    // A UTCTime of twelve bytes whose first character is three bytes long.
    #[case::non_ascii_time(&[
        0x30, 0x1c, 0x30, 0x1a, 0x02, 0x01, 0x01, 0x30, 0x00, 0x30, 0x00,
        0x30, 0x11, 0x17, 0x00, 0x17, 0x0d, 0xe2, 0x82, 0xac, b'1', b'2', b'3',
        b'4', b'5', b'6', b'7', b'8', b'9', b'Z',
    ])]
    fn malformed_der_has_no_expiry(#[case] der: &[u8]) {
        assert_eq!(not_after(der), None);
    }

    #[test]
    fn truncated_certificates_have_no_expiry() {
        let der = certificate_until(2031, 5, 17);
        for cut in [1, 10, der.len() / 2, der.len() - 1] {
            assert_eq!(not_after(&der[..cut]), None, "cut at {cut}");
        }
    }
}
