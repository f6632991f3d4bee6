//! A TCP fault proxy for tests: sits between a client and a real server, forwards bytes both
//! ways, counts occurrences of byte patterns in the client's traffic (e.g. request lines), and on
//! demand cuts every connection open at the moment a byte budget runs out, as a server crash or
//! a network partition would. Connections opened after the cut pass through normally, so the
//! client's recovery path (retries, aborts) can be observed.
//!
//! It can also play a server that is down ([`Mode::Refuse`]: every connection closed at once,
//! as a dead port answers) or hung ([`Mode::Hang`]: accepted, never answered, as a stopped
//! process or a black-holed route), counting every connection attempt either way, and answer one
//! HTTP/1.1 request matching a pattern with a canned response (e.g. S3's `503 SlowDown`) instead
//! of forwarding it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

struct Pattern {
    bytes: Vec<u8>,
    hits: AtomicU64,
}

/// How new connections are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forwarded to the upstream.
    Pass,
    /// Closed at once without reaching the upstream (a server that is down).
    Refuse,
    /// Held open, nothing forwarded and nothing answered, until the mode changes or the proxy
    /// is dropped (a hung server).
    Hang,
}

/// A canned HTTP/1.1 response for the next request whose head contains `pattern`.
struct Canned {
    pattern: Vec<u8>,
    response: Vec<u8>,
    remaining: u64,
}

struct State {
    upstream: SocketAddr,
    mode: watch::Sender<Mode>,
    /// Connections accepted, whatever the mode.
    connections: AtomicU64,
    canned: Mutex<Vec<Canned>>,
    /// Canned responses sent so far.
    answered: AtomicU64,
    /// Client-to-server bytes forwarded so far.
    sent: AtomicU64,
    /// `sent` value at which open connections are cut; `u64::MAX` when not armed.
    cut_at: AtomicU64,
    cuts: watch::Sender<u64>,
    patterns: Mutex<Vec<Arc<Pattern>>>,
}

/// S3 multipart requests, as they appear in a request head: CreateMultipartUpload
/// (`?uploads`, which ListMultipartUploads also carries), UploadPart, AbortMultipartUpload,
/// CompleteMultipartUpload.
const MULTIPART_REQUESTS: [&[u8]; 4] = [
    b"?uploads",
    b"partNumber=",
    b"AbortMultipartUpload",
    b"CompleteMultipartUpload",
];

pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<FaultProxy> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            upstream,
            mode: watch::channel(Mode::Pass).0,
            connections: AtomicU64::new(0),
            canned: Mutex::new(Vec::new()),
            answered: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            cut_at: AtomicU64::new(u64::MAX),
            cuts: watch::channel(0).0,
            patterns: Mutex::new(Vec::new()),
        });
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                accept_state.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(client, accept_state.clone()));
            }
        });
        Ok(FaultProxy { addr, state, task })
    }

    /// A proxy in front of an S3 server's `http://host:port` endpoint that watches its multipart
    /// requests: `count(b"?uploads")`, `b"partNumber="`, `b"AbortMultipartUpload"`,
    /// `b"CompleteMultipartUpload"`.
    pub async fn in_front_of_s3(endpoint: &str) -> anyhow::Result<FaultProxy> {
        let upstream = endpoint
            .strip_prefix("http://")
            .ok_or_else(|| anyhow::anyhow!("{endpoint} is not an http:// endpoint"))?
            .parse()?;
        let proxy = FaultProxy::start(upstream).await?;
        for pattern in MULTIPART_REQUESTS {
            proxy.watch(pattern);
        }
        Ok(proxy)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://` URL of the proxy, for clients of HTTP servers.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Client-to-server bytes forwarded so far.
    pub fn bytes_sent(&self) -> u64 {
        self.state.sent.load(Ordering::SeqCst)
    }

    /// Once `budget` more client-to-server bytes have been forwarded, closes every connection
    /// open at that moment (once).
    pub fn cut_after(&self, budget: u64) {
        let at = self.bytes_sent().saturating_add(budget);
        self.state.cut_at.store(at, Ordering::SeqCst);
    }

    /// How new connections are treated from now on; connections already open are cut when
    /// the mode leaves `Pass` (as a crash would), and hung ones are released when it leaves
    /// `Hang`.
    pub fn set_mode(&self, mode: Mode) {
        self.state.mode.send_replace(mode);
    }

    /// Connections accepted so far, in any mode: a client's connection attempts.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Answers the next `times` HTTP/1.1 requests whose request head contains `pattern` with
    /// `response` (a whole response, head and body) instead of forwarding them: the request's
    /// body (by `Content-Length`) is read and dropped, the response written, and the connection
    /// closed. The request never reaches the upstream.
    pub fn answer_http(&self, pattern: &[u8], response: Vec<u8>, times: u64) {
        assert!(!pattern.is_empty(), "an empty pattern matches everywhere");
        self.state.canned.lock().unwrap().push(Canned {
            pattern: pattern.to_vec(),
            response,
            remaining: times,
        });
    }

    /// Canned HTTP responses sent so far.
    pub fn answered(&self) -> u64 {
        self.state.answered.load(Ordering::SeqCst)
    }

    /// How many cuts have happened.
    pub fn cuts(&self) -> u64 {
        *self.state.cuts.borrow()
    }

    /// Starts counting occurrences of `pattern` in client-to-server traffic; read the count with
    /// [`FaultProxy::count`].
    pub fn watch(&self, pattern: &[u8]) {
        assert!(!pattern.is_empty(), "an empty pattern matches everywhere");
        self.state.patterns.lock().unwrap().push(Arc::new(Pattern {
            bytes: pattern.to_vec(),
            hits: AtomicU64::new(0),
        }));
    }

    /// Waits (up to 60 s) until the watched `pattern` has been seen `n` times.
    pub async fn seen(&self, pattern: &[u8], n: u64) {
        crate::wait::until(
            &format!(
                "{n} requests matching {:?}",
                String::from_utf8_lossy(pattern)
            ),
            std::time::Duration::from_secs(60),
            std::time::Duration::from_millis(10),
            || async {
                let count = self.count(pattern);
                if count >= n {
                    Ok(())
                } else {
                    Err(format!("{count} of {n}"))
                }
            },
        )
        .await
        .unwrap();
    }

    pub fn count(&self, pattern: &[u8]) -> u64 {
        self.state
            .patterns
            .lock()
            .unwrap()
            .iter()
            .find(|p| p.bytes == pattern)
            .map(|p| p.hits.load(Ordering::SeqCst))
            .unwrap_or(0)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// S3's throttling answer, as AWS sends it.
pub fn s3_slow_down() -> Vec<u8> {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                <Message>Please reduce your request rate.</Message>\
                <RequestId>faultproxy</RequestId></Error>";
    format!(
        "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn serve(client: TcpStream, state: Arc<State>) {
    let mut mode = state.mode.subscribe();
    let initial = *mode.borrow_and_update();
    match initial {
        Mode::Pass => {}
        Mode::Refuse => return,
        Mode::Hang => {
            // Held until the mode changes (then closed, as a recovered server's restart would)
            // or the proxy goes away.
            let _held = client;
            let _ = mode.changed().await;
            return;
        }
    }
    let Ok(server) = TcpStream::connect(state.upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut cuts = state.cuts.subscribe();
    cuts.mark_unchanged();
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up_state = state.clone();
    let upstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        // The tail of the previous read, so a pattern split across two reads still counts.
        let mut carry: Vec<u8> = Vec::new();
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            scan(&up_state, &mut carry, &buf[..n]);
            if let Some((at, response)) = canned_for(&up_state, &buf[..n]) {
                // Whatever precedes the matching request still goes through.
                if server_write.write_all(&buf[..at]).await.is_err() {
                    break;
                }
                let mut head_and_more = buf[at..n].to_vec();
                drain_request(&mut client_read, &mut head_and_more).await;
                up_state.answered.fetch_add(1, Ordering::SeqCst);
                return Some(response);
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            let sent = up_state.sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
            let cut_at = up_state.cut_at.load(Ordering::SeqCst);
            if sent >= cut_at
                && up_state
                    .cut_at
                    .compare_exchange(cut_at, u64::MAX, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                up_state.cuts.send_modify(|c| *c += 1);
            }
        }
        let _ = server_write.shutdown().await;
        None
    };
    let (canned_tx, canned_rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    let upstream = async move {
        if let Some(response) = upstream.await {
            let _ = canned_tx.send(response);
        }
    };
    let downstream = async move {
        tokio::select! {
            _ = tokio::io::copy(&mut server_read, &mut client_write) => {}
            // A canned answer replaces whatever the upstream would have said.
            Ok(response) = canned_rx => {
                let _ = client_write.write_all(&response).await;
            }
        }
        let _ = client_write.shutdown().await;
    };
    let mode_left_pass = async move {
        loop {
            if mode.changed().await.is_err() {
                return std::future::pending::<()>().await;
            }
            if *mode.borrow() != Mode::Pass {
                return;
            }
        }
    };
    tokio::select! {
        _ = async { tokio::join!(upstream, downstream) } => {}
        // Dropping both halves of both sockets closes the connection mid-request.
        _ = cuts.changed() => {}
        () = mode_left_pass => {}
    }
}

/// If a canned response is armed for a request head in `data`: where that request starts and
/// the response (its count is taken).
fn canned_for(state: &State, data: &[u8]) -> Option<(usize, Vec<u8>)> {
    let mut canned = state.canned.lock().unwrap();
    for c in canned.iter_mut().filter(|c| c.remaining > 0) {
        let Some(pos) = data
            .windows(c.pattern.len())
            .position(|w| w == c.pattern.as_slice())
        else {
            continue;
        };
        // The request line holding the pattern starts after the previous line break.
        let start = data[..pos]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        c.remaining -= 1;
        return Some((start, c.response.clone()));
    }
    None
}

/// Reads the rest of a request whose first bytes are in `seen` (its head, then `Content-Length`
/// bytes of body, unless it waits for `100-continue`), so the client has finished sending
/// before the canned response arrives. Bounded: gives up after 30 s or 1 GiB.
async fn drain_request(client: &mut tokio::net::tcp::OwnedReadHalf, seen: &mut Vec<u8>) {
    let drain = async {
        let mut buf = vec![0u8; 64 * 1024];
        let head_end = loop {
            if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        };
        let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
        if head.contains("expect: 100-continue") {
            return;
        }
        let length: u64 = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
            .min(1 << 30);
        let mut left = length.saturating_sub((seen.len() - head_end) as u64);
        while left > 0 {
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n as u64),
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), drain).await;
}

fn scan(state: &State, carry: &mut Vec<u8>, data: &[u8]) {
    let patterns = state.patterns.lock().unwrap().clone();
    if patterns.is_empty() {
        return;
    }
    let mut window = std::mem::take(carry);
    window.extend_from_slice(data);
    let mut longest = 0;
    for p in &patterns {
        longest = longest.max(p.bytes.len());
        let hits = window
            .windows(p.bytes.len())
            .filter(|w| *w == p.bytes.as_slice())
            .count();
        if hits > 0 {
            p.hits.fetch_add(hits as u64, Ordering::SeqCst);
        }
    }
    let keep = longest.saturating_sub(1).min(window.len());
    *carry = window[window.len() - keep..].to_vec();
}
