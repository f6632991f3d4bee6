//! A minimal HTTP/1.1 client for tests of admin ports and the gateway: one request per
//! connection, so what the server sent is exactly what the test sees.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends one request: (status, raw head, body).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String, String) {
    let (status, head, body) =
        request_bytes(addr, method, path, headers, body.map(str::as_bytes)).await;
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

/// Sends one request with a binary body: (status, raw head, body bytes). A `Host` header in
/// `headers` replaces the default one (signed URLs cover the host).
pub async fn request_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> (u16, String, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str("Host: test\r\n");
    }
    head.push_str("Connection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("write request");
    if let Some(b) = body {
        // The server may answer (413, 401) and close before reading it all.
        let _ = stream.write_all(b).await;
    }
    let mut raw = Vec::new();
    // A server that closes with unread request bytes resets the connection; what it sent
    // before that is still the answer.
    let _ = stream.read_to_end(&mut raw).await;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw.get(split + 4..).unwrap_or_default().to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, body)
}

/// A GET: (status, body).
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = request(addr, "GET", path, &[], None).await;
    (status, body)
}
