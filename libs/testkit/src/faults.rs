//! A TCP fault proxy for tests: sits between a client and a real server, forwards bytes both
//! ways, counts occurrences of byte patterns in the client's traffic (e.g. request lines), and on
//! demand cuts every connection open at the moment a byte budget runs out, as a server crash or
//! a network partition would. Connections opened after the cut pass through normally, so the
//! client's recovery path (retries, aborts) can be observed.

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

struct State {
    upstream: SocketAddr,
    /// Client-to-server bytes forwarded so far.
    sent: AtomicU64,
    /// `sent` value at which open connections are cut; `u64::MAX` when not armed.
    cut_at: AtomicU64,
    cuts: watch::Sender<u64>,
    patterns: Mutex<Vec<Arc<Pattern>>>,
}

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
            sent: AtomicU64::new(0),
            cut_at: AtomicU64::new(u64::MAX),
            cuts: watch::channel(0).0,
            patterns: Mutex::new(Vec::new()),
        });
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, accept_state.clone()));
            }
        });
        Ok(FaultProxy { addr, state, task })
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

async fn serve(client: TcpStream, state: Arc<State>) {
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
    };
    let downstream = async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::select! {
        _ = async { tokio::join!(upstream, downstream) } => {}
        // Dropping both halves of both sockets closes the connection mid-request.
        _ = cuts.changed() => {}
    }
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
