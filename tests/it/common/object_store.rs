//! The object store: an embedded S3 server that checks signatures, one per test (it is cheap).

use std::net::SocketAddr;

use super::*;

pub use ibex_api::devenv::s3::TempS3;

/// Settings pointing the app at `s3` (owned strings, for [`TestApp::start`]'s overrides).
pub fn s3_settings(s3: &TempS3) -> Vec<(&'static str, String)> {
    s3.settings()
}

/// `overrides` as the `&[(&str, &str)]` [`TestApp::start`] takes.
pub fn as_refs<'a>(owned: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    owned.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A plain HTTP GET of an absolute `http://host:port/path?query` URL, no credentials, as a
/// browser or curl would send it: (status, body).
pub async fn plain_get(url: &str) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: SocketAddr = host.parse().expect("an IP:port host");
    let reply = request(addr, "GET", path, &[], b"").await;
    (reply.status, reply.body)
}

/// `url` with the character at `at` changed (a hex digit to another), as an attacker would.
pub fn flipped(url: &str, at: usize) -> String {
    let mut bytes = url.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    String::from_utf8(bytes).unwrap()
}

/// A pre-signed URL with one character of its signature changed.
pub fn with_forged_signature(url: &str) -> String {
    let at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    flipped(url, at)
}
