//! Starts real `lintel serve` processes on ephemeral loopback ports, against a fresh
//! SQLite file or a fresh PostgreSQL database, and talks HTTP to them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;

pub const ADMIN: &str = "it-admin-token-0123456789abcdef0123456789abcdef";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

fn postgres_admin_url() -> String {
    std::env::var("LINTEL_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// PostgreSQL tests run unless explicitly skipped; an unreachable server fails them loudly.
pub fn postgres_skipped() -> bool {
    if std::env::var("LINTEL_TEST_POSTGRES").is_ok_and(|v| v == "skip") {
        eprintln!("SKIPPED: PostgreSQL tests (LINTEL_TEST_POSTGRES=skip)");
        return true;
    }
    false
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A database for one test: a SQLite file in a temp dir, or a fresh PostgreSQL database
/// that is dropped afterwards.
pub struct Database {
    pub url: String,
    pub dir: PathBuf,
    pg_name: Option<String>,
}

fn run_admin_sql(sql: String) {
    // Drop runs outside async context: use a small runtime on its own thread.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&postgres_admin_url()).await.unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is not reachable at {} ({e}); start it (see .ci/run) or set LINTEL_TEST_POSTGRES=skip",
                    postgres_admin_url()
                )
            });
            for statement in sql.split(';') {
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned())).execute(&mut conn).await.expect("admin SQL");
            }
        })
    })
    .join()
    .expect("admin SQL thread");
}

impl Database {
    pub fn new(backend: Backend) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("lintel-it-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        match backend {
            Backend::Sqlite => {
                Self { url: format!("sqlite://{}", dir.join("lintel.db").display()), dir, pg_name: None }
            }
            Backend::Postgres => {
                let name = format!("lintel_it_{}_{n}", std::process::id());
                run_admin_sql(format!("DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}"));
                let base = postgres_admin_url();
                let url = match base.rfind('/') {
                    Some(i) => format!("{}/{name}", &base[..i]),
                    None => panic!("LINTEL_TEST_POSTGRES_URL needs a database path"),
                };
                Self { url, dir, pg_name: Some(name) }
            }
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name {
            run_admin_sql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn lintel() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lintel"))
}

/// `lintel init`: the database and its key files, for commands run before any server
/// (only `serve` and `init` create a database).
pub fn init(db: &Database) {
    let out = lintel().args(["init", "--database-url", &db.url]).current_dir(&db.dir).output().expect("lintel init");
    assert!(out.status.success(), "lintel init: {}", String::from_utf8_lossy(&out.stderr));
}

/// A running `lintel serve`; killed (SIGKILL) when dropped.
pub struct Server {
    pub base: String,
    child: Child,
    pub client: reqwest::Client,
}

impl Server {
    pub fn start(db: &Database) -> Self {
        Self::start_with(db, &[])
    }

    pub fn start_with(db: &Database, env: &[(&str, &str)]) -> Self {
        Self::start_with_stderr(db, env, Stdio::inherit())
    }

    /// Like `start_with`, the server's log going where the test reads it (a file).
    pub fn start_with_stderr(db: &Database, env: &[(&str, &str)], stderr: impl Into<Stdio>) -> Self {
        Self::spawn(Self::command(db, env, stderr))
    }

    /// Like `start_with`, with the server's descriptor limit (soft and hard) set to `nofile`.
    pub fn start_with_nofile(db: &Database, env: &[(&str, &str)], nofile: u64) -> Self {
        use std::os::unix::process::CommandExt;
        let mut cmd = Self::command(db, env, Stdio::inherit());
        // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(move || rlimit::setrlimit(rlimit::Resource::NOFILE, nofile, nofile));
        }
        Self::spawn(cmd)
    }

    fn command(db: &Database, env: &[(&str, &str)], stderr: impl Into<Stdio>) -> Command {
        let mut cmd = lintel();
        // The tests' own settings (LINTEL_TEST_*, LINTEL_CRASH_*) are not the server's: it
        // would warn about each as an unknown configuration key.
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("LINTEL_")) {
            cmd.env_remove(key);
        }
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--database-url", &db.url])
            .current_dir(&db.dir)
            .env("LINTEL_ADMIN_TOKEN", ADMIN)
            .env("LINTEL_FOLLOW_INTERVAL_MS", "200")
            .env("RUST_LOG", std::env::var("LINTEL_TEST_SERVER_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.spawn().expect("lintel starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("lintel prints its address");
        let base = line
            .trim()
            .strip_prefix("lintel listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Self { base, child, client: reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap() }
    }

    /// The address it listens on (`127.0.0.1:PORT`).
    pub fn addr(&self) -> std::net::SocketAddr {
        self.base.strip_prefix("http://").and_then(|a| a.parse().ok()).expect("base is http://ADDR")
    }

    /// Sends SIGTERM and waits (at most a minute) for the process to end: how long it
    /// took, and how it ended.
    pub fn terminate(mut self) -> (Duration, std::process::ExitStatus) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid fits");
        let began = std::time::Instant::now();
        // SAFETY: kill has no memory effects; the pid is our own child's, not yet reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM sent");
        while began.elapsed() < Duration::from_secs(60) {
            if let Some(status) = self.child.try_wait().expect("wait for lintel") {
                return (began.elapsed(), status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("lintel was still running {:?} after SIGTERM", began.elapsed());
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The server's process id (for `prlimit`), while it runs.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited, and how (a fault test's server must not die).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(ADMIN);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn put(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, None).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// Posts and insists on the expected status, showing the body otherwise.
    pub async fn ok(&self, path: &str, body: Value, status: u16) -> Value {
        let (got, answer) = self.post(path, body).await;
        assert_eq!(got, status, "POST {path}: {answer}");
        answer
    }

    pub async fn decide(&self, door: &str, credential: Value) -> Value {
        self.ok("/api/v1/decisions", serde_json::json!({"door": door, "credential": credential}), 200).await
    }

    /// Every event matching `filter` (e.g. `kind=decision&door=front`), through all pages.
    pub async fn all_events(&self, filter: &str) -> Vec<Value> {
        all_events(&self.client, &self.base, filter).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// All events, oldest first.
    pub async fn events(&self) -> Vec<Value> {
        let (status, page) = self.get("/api/v1/events?limit=1000").await;
        assert_eq!(status, 200, "{page}");
        page["items"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A door, a person with a card, and a grant: the smallest world where a card opens a door.
pub async fn small_world(s: &Server) {
    s.ok("/api/v1/doors", serde_json::json!({"id": "front", "name": "Front door"}), 201).await;
    s.ok("/api/v1/people", serde_json::json!({"id": "alice", "name": "Alice", "email": "alice@example.org"}), 201)
        .await;
    s.ok(
        "/api/v1/people/alice/credentials",
        serde_json::json!({"kind": "card", "uid": "04A1B2C3", "revocation_code": "7"}),
        201,
    )
    .await;
    s.ok("/api/v1/grants", serde_json::json!({"person_id": "alice", "doors": ["front"]}), 201).await;
}

/// Every event matching `filter`, oldest first, page by page; for callers without a
/// `Server` at hand (a fake device checking lintel's log while lintel drives it).
pub async fn all_events(client: &reqwest::Client, base: &str, filter: &str) -> Result<Vec<Value>, String> {
    let mut all = Vec::new();
    let mut after = "0".to_owned();
    loop {
        let url = format!("{base}/api/v1/events?limit=1000&after={after}&{filter}");
        let response = client.get(&url).bearer_auth(ADMIN).send().await.map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status();
        let page: Value = response.json().await.map_err(|e| format!("GET {url}: {e}"))?;
        if !status.is_success() {
            return Err(format!("GET {url}: {status} {page}"));
        }
        let items = page["items"].as_array().cloned().unwrap_or_default();
        let Some(last) = items.last().and_then(|e| e["id"].as_str()) else { return Ok(all) };
        after = last.to_owned();
        all.extend(items);
    }
}

pub fn card(uid: &str, code: Option<&str>) -> Value {
    match code {
        Some(c) => serde_json::json!({"kind": "card", "uid": uid, "revocation_code": c}),
        None => serde_json::json!({"kind": "card", "uid": uid}),
    }
}

pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// Runs each listed `async fn(Backend)` as a test on SQLite and on PostgreSQL; those
/// after `; sqlite only:` on SQLite alone (a fault only SQLite can have, or one whose
/// PostgreSQL run would only repeat the SQLite one, slowly).
#[macro_export]
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        $crate::on_both_backends!($($test),* ; sqlite only:);
    };
    ($($test:ident),* ; sqlite only: $($only:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::harness::Backend::Sqlite).await
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $only() {
                    super::$only($crate::harness::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if $crate::harness::postgres_skipped() {
                        return;
                    }
                    super::$test($crate::harness::Backend::Postgres).await
                }
            )*
        }
    };
}

/// The server's wall clock under libfaketime: an offset from the real clock, kept in a file
/// the server rereads (tokio's timers stay on the real monotonic clock).
pub struct FakeClock {
    file: PathBuf,
    path: String,
}

pub const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

impl FakeClock {
    pub fn new(db: &Database) -> Self {
        assert!(
            Path::new(FAKETIME).exists(),
            "clock tests need libfaketime at {FAKETIME} (apt-get install faketime; scripts/test installs it)"
        );
        let file = db.dir.join("faketime");
        let clock = Self { path: file.display().to_string(), file };
        clock.set("+0");
        clock
    }

    /// The environment that puts a server on this clock.
    pub fn env(&self) -> [(&str, &str); 4] {
        [
            ("LD_PRELOAD", FAKETIME),
            ("FAKETIME_TIMESTAMP_FILE", &self.path),
            // A cached offset is kept until the faked clock passes its expiry, which a
            // clock moved back would not do for hours.
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ]
    }

    /// Sets the offset (`+1h`, `-90`, `+0`), atomically.
    pub fn set(&self, offset: &str) {
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, format!("{offset}\n")).expect("faketime file");
        std::fs::rename(&tmp, &self.file).expect("faketime file");
    }

    /// Moves the server's clock to `at`.
    pub async fn set_to(&self, at: chrono::DateTime<chrono::Utc>) {
        let offset = (at - chrono::Utc::now()).num_milliseconds() as f64 / 1000.0;
        self.set(&format!("{offset:+.3}"));
        // The server rereads the file on every reading of its clock.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A minimal SMTP server that keeps what it receives.
pub async fn smtp_sink() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("smtp://{}", listener.local_addr().unwrap());
    let mail = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = mail.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 sink ready\r\n").await.ok();
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(body) = data.as_mut() {
                        if line == "." {
                            kept.lock().unwrap().push(data.take().unwrap());
                            write.write_all(b"250 kept\r\n").await.ok();
                        } else {
                            body.push_str(&line);
                            body.push('\n');
                        }
                        continue;
                    }
                    let verb = line.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
                    let answer: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 sink\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go on\r\n"
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await.ok();
                            break;
                        }
                        _ => b"250 ok\r\n",
                    };
                    write.write_all(answer).await.ok();
                }
            });
        }
    });
    (url, mail)
}

/// The first mail `sink` received (waiting up to 10 s), its quoted-printable soft line
/// breaks and `=3D` undone.
pub async fn first_mail(sink: &std::sync::Mutex<Vec<String>>) -> String {
    for _ in 0..100 {
        if let Some(mail) = sink.lock().unwrap().first() {
            return mail.replace("=\n", "").replace("=3D", "=");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no mail arrived");
}
