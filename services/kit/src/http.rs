//! The one way the suite builds an outbound HTTP client: identity's SMS provider, the
//! portal's calls to the gateway, and the test and benchmark clients.

/// Returns a `reqwest` client builder whose TLS is rustls on the ring provider, the one
/// sqlx already uses (reqwest's own default, aws-lc, would add a C library to every
/// build). rustls needs the process's provider installed before the first client.
pub fn client_builder() -> reqwest::ClientBuilder {
    // An error means this process has a provider installed already, which it keeps.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// Returns a client with reqwest's defaults, built as [`client_builder`] says.
///
/// # Panics
/// Never in practice: a default builder fails only when the system's TLS roots cannot
/// be read, and then no HTTPS call could work either.
pub fn client() -> reqwest::Client {
    client_builder()
        .build()
        .unwrap_or_else(|error| panic!("cannot build an HTTP client: {error}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_client_builds_with_the_ring_provider_installed() {
        let _client = super::client();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
