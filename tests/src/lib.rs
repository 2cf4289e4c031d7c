//! The harness for end-to-end tests: start the real gateway (router, middleware, handlers)
//! in-process on 127.0.0.1:0 from a config text, and talk to it over real sockets.
//! Mock providers come from `sluice-mock`.

pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::Value;
use sluice_config::Config;
use sluice_gateway::AppState;
use sluice_service::Service;
use sluice_store::Store;
use tokio::sync::oneshot;

pub use sluice_mock::{MockProvider, Step, Wire};

/// The gateway key every test config uses.
pub const KEY: &str = "sk-test-gateway-key";

/// A running gateway. Dropping it signals shutdown.
pub struct Gateway {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    /// The gateway's completion service (its store, ledger, limits, router).
    pub service: Service,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// The SQLite file's directory, removed with the gateway.
    _data: tempfile::TempDir,
}

impl Gateway {
    /// Starts a gateway from config text. `[server] listen` is ignored: it binds port 0.
    /// A `[[keys]]` entry with [`KEY`] is added unless the text has its own.
    pub async fn start(config: &str) -> Gateway {
        let text = if config.contains("[[keys]]") {
            config.to_owned()
        } else {
            format!("[[keys]]\nname = \"test\"\nkey = \"{KEY}\"\n\n{config}")
        };
        let data = tempfile::tempdir().expect("temp dir");
        let text = if text.contains("[database]") {
            text
        } else {
            format!(
                "{text}\n[database]\nurl = \"sqlite://{}/sluice.db\"\n",
                data.path().display()
            )
        };
        let cfg = Config::parse(&text, &|_| None)
            .unwrap_or_else(|e| panic!("test config is invalid:\n{e}\n---\n{text}"));
        let store = Store::open(cfg.database.url.expose())
            .await
            .expect("store opens");
        let service = Service::start(&cfg, store).await.expect("service starts");
        let state = Arc::new(
            AppState::start(&cfg, service.clone())
                .await
                .expect("scheduler starts"),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(sluice_gateway::run(listener, state.clone(), async {
            let _ = rx.await;
        }));
        Gateway {
            addr,
            state,
            service,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            task: Some(task),
            _data: data,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `POST path` with the test key and a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(KEY)
            .json(body)
            .send()
            .await
            .expect("gateway answers")
    }

    /// A non-streamed chat call: status, headers and JSON body.
    pub async fn chat(&self, body: Value) -> Reply {
        let resp = self.post("/v1/chat/completions", &body).await;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("gateway sent non-JSON ({e}): {text}"));
        Reply {
            status,
            headers,
            json,
        }
    }

    /// A streamed chat call read to its end.
    pub async fn chat_stream(&self, mut body: Value) -> StreamReply {
        body["stream"] = Value::Bool(true);
        let resp = self.post("/v1/chat/completions", &body).await;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let mut events = Vec::new();
        let mut done = false;
        let mut stream = resp.bytes_stream().eventsource();
        while let Some(ev) = stream.next().await {
            let Ok(ev) = ev else { break };
            if ev.data == "[DONE]" {
                done = true;
                continue;
            }
            events.push(serde_json::from_str(&ev.data).expect("each event is JSON"));
        }
        StreamReply {
            status,
            headers,
            events,
            done,
        }
    }

    /// Stops accepting and waits for the server task (bounded by its grace period).
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub json: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The stable error code of an error reply.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }

    pub fn text(&self) -> &str {
        self.json["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or("")
    }
}

pub struct StreamReply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    /// Every `data:` event but `[DONE]`, parsed.
    pub events: Vec<Value>,
    /// Whether `data: [DONE]` arrived.
    pub done: bool,
}

impl StreamReply {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The streamed text, concatenated.
    pub fn text(&self) -> String {
        self.events
            .iter()
            .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
            .collect()
    }

    /// The error event that ended the stream, if any.
    pub fn error(&self) -> Option<&Value> {
        self.events.iter().find_map(|e| e.get("error"))
    }

    pub fn finish_reason(&self) -> Option<&str> {
        self.events
            .iter()
            .find_map(|e| e["choices"][0]["finish_reason"].as_str())
    }

    pub fn usage(&self) -> Option<&Value> {
        self.events
            .iter()
            .find_map(|e| e.get("usage").filter(|u| !u.is_null()))
    }

    /// Tool calls reassembled from their streamed pieces: (id, name, arguments).
    pub fn tool_calls(&self) -> Vec<(String, String, String)> {
        let mut calls: Vec<(String, String, String)> = Vec::new();
        for e in &self.events {
            let Some(pieces) = e["choices"][0]["delta"]["tool_calls"].as_array() else {
                continue;
            };
            for p in pieces {
                let i = p["index"].as_u64().expect("tool call index") as usize;
                if calls.len() <= i {
                    calls.resize(i + 1, Default::default());
                }
                if let Some(id) = p["id"].as_str() {
                    calls[i].0 = id.to_owned();
                }
                if let Some(n) = p["function"]["name"].as_str() {
                    calls[i].1.push_str(n);
                }
                if let Some(a) = p["function"]["arguments"].as_str() {
                    calls[i].2.push_str(a);
                }
            }
        }
        calls
    }
}

/// A `[providers.ID]` table pointing at a mock, with the wire's kind and the given keys.
pub fn provider(id: &str, mock: &MockProvider, keys: &[&str], extra: &str) -> String {
    let kind = match mock.wire() {
        Wire::OpenAi => "openai",
        Wire::Anthropic => "anthropic",
        Wire::Gemini => "gemini",
    };
    let keys: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    format!(
        "[providers.{id}]\nkind = \"{kind}\"\nbase_url = \"{}\"\napi_keys = [{}]\n{extra}\n",
        mock.base_url(),
        keys.join(", ")
    )
}

/// Fast routing settings for tests: short backoffs so retries do not slow the suite.
pub const FAST_ROUTING: &str = "[routing]\nbackoff_base_ms = 5\nbackoff_max_ms = 20\n";

/// A user message body for `model`.
pub fn ask(model: &str, text: &str) -> Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// A fresh, empty PostgreSQL database on the server of `SLUICE_TEST_DATABASE_URL`, dropped
/// by [`TestDatabase::drop_now`]. Panics when the variable is unset, unless
/// `SLUICE_TEST_SKIP_POSTGRES` is set (then `None`): scripts/test always sets it.
pub struct TestDatabase {
    pub url: String,
    admin: Store,
    name: String,
}

impl TestDatabase {
    pub async fn create() -> Option<TestDatabase> {
        let admin_url = match std::env::var("SLUICE_TEST_DATABASE_URL") {
            Ok(url) => url,
            Err(_) if std::env::var("SLUICE_TEST_SKIP_POSTGRES").is_ok() => return None,
            Err(_) => panic!(
                "SLUICE_TEST_DATABASE_URL is not set: run scripts/test, or set it (or SLUICE_TEST_SKIP_POSTGRES=1)"
            ),
        };
        let name =
            format!("sluice_e2e_{}", std::process::id()) + &format!("_{}", fastrand_suffix());
        let admin = Store::connect(&admin_url)
            .await
            .expect("postgres reachable");
        admin
            .execute_raw(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        let (base, query) = admin_url
            .split_once('?')
            .map_or((admin_url.as_str(), None), |(b, q)| (b, Some(q)));
        let server = &base[..base
            .rfind('/')
            .filter(|i| *i > base.find("://").map_or(0, |s| s + 2))
            .unwrap_or(base.len())];
        let url = match query {
            Some(q) => format!("{server}/{name}?{q}"),
            None => format!("{server}/{name}"),
        };
        Some(TestDatabase { url, admin, name })
    }

    pub async fn drop_now(self) {
        let _ = self
            .admin
            .execute_raw(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await;
        self.admin.close().await;
    }
}

fn fastrand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{nanos}_{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Polls `check` every 50 ms for up to `secs` seconds; true once it holds.
pub async fn eventually(secs: u64, mut check: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..secs * 20 {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// A TCP proxy between a client and a gateway, for tests of what a client does when its
/// connection breaks: [`Proxy::cut`] ends every connection through it, [`Proxy::freeze`]
/// stops them forwarding while their sockets stay open (a silent peer), and
/// [`Proxy::set_upstream`] points new connections at another gateway. New connections
/// after a cut or a freeze are forwarded as usual.
pub struct Proxy {
    pub addr: SocketAddr,
    shared: Arc<ProxyShared>,
    task: tokio::task::JoinHandle<()>,
}

struct ProxyShared {
    upstream: std::sync::Mutex<SocketAddr>,
    /// What connections do: one sender per batch of connections (those accepted between
    /// two cuts or freezes), the last for the connections accepted from now on. The
    /// older ones are kept so a frozen connection can still be cut.
    modes: std::sync::Mutex<Vec<tokio::sync::watch::Sender<PipeMode>>>,
    accepted: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PipeMode {
    Forward,
    Frozen,
    Cut,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(ProxyShared {
            upstream: std::sync::Mutex::new(upstream),
            modes: std::sync::Mutex::new(vec![tokio::sync::watch::Sender::new(PipeMode::Forward)]),
            accepted: std::sync::atomic::AtomicUsize::new(0),
        });
        let accept = shared.clone();
        let task = tokio::spawn(async move {
            let mut pipes = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                accept
                    .accepted
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let upstream = *accept.upstream.lock().expect("not poisoned");
                let mode = accept
                    .modes
                    .lock()
                    .expect("not poisoned")
                    .last()
                    .expect("there is always a current batch")
                    .subscribe();
                pipes.spawn(pipe(client, upstream, mode));
            }
        });
        Proxy { addr, shared, task }
    }

    /// `ws://ADDR/ws` through the proxy.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Ends every connection open through the proxy (both sides see the TCP connection
    /// end, with no WebSocket close).
    pub fn cut(&self) {
        self.tell(PipeMode::Cut);
    }

    /// Stops every open connection forwarding, in both directions, with the sockets left
    /// open: each side sees a peer that went silent.
    pub fn freeze(&self) {
        self.tell(PipeMode::Frozen);
    }

    /// Where connections accepted from now on go.
    pub fn set_upstream(&self, addr: SocketAddr) {
        *self.shared.upstream.lock().expect("not poisoned") = addr;
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared
            .accepted
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Tells every connection open now; later ones are forwarded.
    fn tell(&self, mode: PipeMode) {
        let mut modes = self.shared.modes.lock().expect("not poisoned");
        for batch in modes.iter() {
            if *batch.borrow() != PipeMode::Cut {
                batch.send_replace(mode);
            }
        }
        modes.push(tokio::sync::watch::Sender::new(PipeMode::Forward));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

async fn pipe(
    client: tokio::net::TcpStream,
    upstream: SocketAddr,
    mode: tokio::sync::watch::Receiver<PipeMode>,
) {
    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_r, mut client_w) = client.into_split();
    let (mut server_r, mut server_w) = server.into_split();
    tokio::select! {
        () = copy(&mut client_r, &mut server_w, mode.clone()) => {}
        () = copy(&mut server_r, &mut client_w, mode) => {}
    }
}

async fn copy(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    mut mode: tokio::sync::watch::Receiver<PipeMode>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let now = *mode.borrow_and_update();
        match now {
            PipeMode::Cut => return,
            PipeMode::Frozen => {
                let _ = mode.wait_for(|m| *m == PipeMode::Cut).await;
                return;
            }
            PipeMode::Forward => {}
        }
        tokio::select! {
            read = from.read(&mut buf) => {
                let n = match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            changed = mode.changed() => {
                if changed.is_err() {
                    // The proxy is gone: nothing will unfreeze or cut this pipe.
                    return;
                }
            }
        }
    }
}

/// The built-in mock behind two models, for the WebSocket tests: `m` answers at once;
/// `slow` streams a word every 150 ms. `extra_ws` goes into `[websocket]`.
pub fn ws_config(extra_ws: &str) -> String {
    format!(
        r#"
[providers.mock]
kind = "mock"
words = 12
[providers.slow]
kind = "mock"
words = 12
chunk_delay_ms = 150
[models.m]
chain = ["mock:model-x"]
[models.slow]
chain = ["slow:model-x"]
[websocket]
{extra_ws}
"#
    )
}

/// The interpreter with the test clients' Python packages (the openai SDK,
/// `websockets`): `$SLUICE_TEST_PYTHON`, else `.venv/bin/python` at the repository root,
/// which scripts/test creates.
pub fn python() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("SLUICE_TEST_PYTHON") {
        return p.into();
    }
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with the test clients: run scripts/test, or `python3 -m venv .venv && .venv/bin/pip install openai websockets`, or set SLUICE_TEST_PYTHON"
    );
    venv
}

/// Runs `tests/python/SCRIPT` with [`python`], the given environment, and `NO_PROXY` for
/// the loopback; panics with both outputs if it fails, else returns its stdout.
pub async fn run_python(script: &str, env: &[(&str, String)]) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    let out = tokio::process::Command::new(python())
        .arg(&path)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    stdout
}
