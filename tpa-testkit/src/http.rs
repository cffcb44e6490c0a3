//! An HTTP client for tests on reqwest: one request per connection
//! (`Connection: close`, no pool, no proxy, no redirects followed), the whole
//! response read into a [`Response`] within 10 s.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How long the async calls wait for a whole answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP response, read to the end.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lowercase) and values, in order, repeated names kept.
    pub headers: Vec<(String, String)>,
    /// The body, decoded as UTF-8 (invalid bytes, as in a binary KRL, replaced).
    pub body: String,
    /// The body as sent.
    pub bytes: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// `method path` without headers or body.
pub async fn http_request(address: SocketAddr, method: &str, path: &str) -> Response {
    http_send(address, method, path, &[], "").await
}

/// One request with extra headers and a body.
pub async fn http_send(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    http_send_from(None, address, method, path, headers, body).await
}

/// [`http_send`] for synchronous tests (the end-to-end harness), on a
/// runtime of its own for this one request, with the whole answer read
/// within `timeout`. Not for use inside a runtime.
pub fn http_send_blocking(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    timeout: Duration,
) -> Response {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for one test request")
        .block_on(send(None, timeout, address, method, path, headers, body))
}

/// Like [`http_send`], from the local address `from` (another loopback
/// address such as 127.0.0.2, so the server sees a different client).
pub async fn http_send_from(
    from: Option<IpAddr>,
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    send(from, TIMEOUT, address, method, path, headers, body).await
}

async fn send(
    from: Option<IpAddr>,
    timeout: Duration,
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .local_address(from)
        .timeout(timeout)
        .build()
        .unwrap();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = client
        .request(method.clone(), format!("http://{address}{path}"))
        .header("Connection", "close");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    // Like a browser or curl: a body (even an empty one) on anything but a
    // GET or HEAD, so the server sees `Content-Length: 0` on a bare POST.
    if !body.is_empty() || !matches!(method, reqwest::Method::GET | reqwest::Method::HEAD) {
        request = request.body(body.to_owned());
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path} to {address}: {e}"));
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let bytes = response
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("{method} {path} to {address}: reading the body: {e}"))
        .to_vec();
    Response {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
    }
}
