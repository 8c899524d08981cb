//! rustls client configuration for each `sslmode`, matching libpq's meaning:
//!
//! | sslmode     | encrypted | chain checked          | host name checked |
//! |-------------|-----------|------------------------|-------------------|
//! | prefer      | if offered| no                     | no                |
//! | require     | yes       | only with sslrootcert  | no                |
//! | verify-ca   | yes       | yes                    | no                |
//! | verify-full | yes       | yes                    | yes               |
//!
//! Trust anchors are the `sslrootcert` PEM file, or the OS trust store when it is absent or
//! `system`. The ring provider is used explicitly, so no process-wide default is needed.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::error::SourceError;
use super::params::{ConnParams, SslMode};

/// The TLS client configuration for `params`, or `None` for `sslmode=disable`.
pub(crate) fn client_config(params: &ConnParams) -> Result<Option<Arc<ClientConfig>>, SourceError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let verifier: Arc<dyn ServerCertVerifier> = match params.sslmode {
        SslMode::Disable => return Ok(None),
        SslMode::Prefer => Arc::new(NoCertCheck(algorithms)),
        SslMode::Require if params.sslrootcert.is_none() => Arc::new(NoCertCheck(algorithms)),
        SslMode::Require | SslMode::VerifyCa => {
            Arc::new(ChainOnly(webpki_verifier(params, provider.clone())?))
        }
        SslMode::VerifyFull => webpki_verifier(params, provider.clone())?,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SourceError::InvalidParams {
            reason: format!("the TLS library refused its own defaults ({e})"),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

/// The name the certificate is checked against (and sent as SNI for host names).
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, SourceError> {
    ServerName::try_from(host.to_owned()).map_err(|_| SourceError::InvalidParams {
        reason: format!("`{host}` is not a valid host name for TLS"),
    })
}

fn webpki_verifier(
    params: &ConnParams,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, SourceError> {
    let mut roots = RootCertStore::empty();
    match params
        .sslrootcert
        .as_deref()
        .filter(|p| p.as_os_str() != "system")
    {
        Some(path) => {
            let root_err =
                |source: Box<dyn std::error::Error + Send + Sync>| SourceError::RootCert {
                    path: path.display().to_string(),
                    source,
                };
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| root_err(Box::new(e)))? {
                let cert = cert.map_err(|e| root_err(Box::new(e)))?;
                roots.add(cert).map_err(|e| root_err(Box::new(e)))?;
            }
        }
        None => {
            // Unreadable entries in the OS store are skipped, as every TLS client does.
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    if roots.is_empty() {
        return Err(SourceError::NoRootCerts {
            mode: params.sslmode,
        });
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| SourceError::RootCert {
            path: params.sslrootcert.as_deref().map_or_else(
                || "the OS trust store".to_owned(),
                |p| p.display().to_string(),
            ),
            source: Box::new(e),
        })
}

/// libpq's `require`/`prefer`: encryption without certificate checks. The handshake
/// signatures are still verified, so the session key belongs to whoever holds the certificate.
#[derive(Debug)]
struct NoCertCheck(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoCertCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// libpq's `verify-ca`: the chain must lead to a trusted root; the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain before the name, so a name error means the chain was fine.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A one-line fix for a failed handshake, by what rustls reported.
pub(crate) fn handshake_hint(err: &std::io::Error, mode: SslMode) -> &'static str {
    let tls = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => {
            "the server's certificate does not name this host: connect with the name in the \
             certificate, or use sslmode=verify-ca"
        }
        Some(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        )) => {
            "the server's certificate is not signed by a trusted CA: set sslrootcert to the CA \
             file that signed it"
        }
        Some(rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) => "the server's certificate has expired: renew it on the server",
        Some(rustls::Error::InvalidCertificate(_)) => {
            "the server's certificate was not accepted (see below; a self-signed certificate \
             acting as its own CA is refused: sign the server certificate with a separate CA and \
             give that CA as sslrootcert), or use sslmode=require to encrypt without verification"
        }
        Some(_) if mode == SslMode::Prefer => {
            "the TLS negotiation failed: check the server's ssl settings, or use sslmode=disable"
        }
        Some(_) => "the TLS negotiation failed: check the server's ssl settings and certificates",
        None => "the connection broke during the TLS handshake: check the server's ssl settings",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_per_mode() {
        let base = ConnParams::parse_with_env("postgres://u@h/db", |_| None).unwrap();
        let with = |mode: SslMode, root: Option<&str>| ConnParams {
            sslmode: mode,
            sslrootcert: root.map(Into::into),
            ..base.clone()
        };
        assert!(
            client_config(&with(SslMode::Disable, None))
                .unwrap()
                .is_none()
        );
        assert!(
            client_config(&with(SslMode::Prefer, None))
                .unwrap()
                .is_some()
        );
        assert!(
            client_config(&with(SslMode::Require, None))
                .unwrap()
                .is_some()
        );
        let err =
            client_config(&with(SslMode::VerifyFull, Some("/nonexistent/ca.pem"))).unwrap_err();
        assert!(err.to_string().contains("check sslrootcert"), "{err}");
        let err = client_config(&with(SslMode::Require, Some("/nonexistent/ca.pem"))).unwrap_err();
        assert!(
            matches!(err, SourceError::RootCert { .. }),
            "require + sslrootcert checks the CA"
        );
    }

    #[test]
    fn server_names() {
        assert!(server_name("db.example.com").is_ok());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("::1").is_ok());
        assert!(server_name("bad name!").is_err());
    }
}
