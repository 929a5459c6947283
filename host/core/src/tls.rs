//! What a TLS failure means to the person who has to fix it: a peer whose
//! certificate is not trusted needs a CA added (`--ca-cert` for the
//! client, `--outbound-ca-cert` for the server), not a retry.

use std::error::Error;

/// Whether `e`, or one of its causes, is rustls refusing the peer's
/// certificate (unknown issuer, expired, wrong name, ...).
pub fn is_untrusted_certificate(e: &(dyn Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if matches!(
            c.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(_))
        ) {
            return true;
        }
        // An I/O error holds the error it wraps (reqwest's connector wraps
        // rustls's twice) without giving it as its source.
        cause = match c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn Error + 'static)),
            None => c.source(),
        };
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("request failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn finds_a_certificate_refusal_inside_an_io_error_among_the_causes() {
        let refused = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        // As reqwest's connector reports it: an I/O error in an I/O error.
        let e = Outer(std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            refused,
        )));
        assert!(is_untrusted_certificate(&e));
        let other = Outer(std::io::Error::other(rustls::Error::DecryptError));
        assert!(!is_untrusted_certificate(&other));
        let plain = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(!is_untrusted_certificate(&plain));
    }
}
