//! HTTP connections: decisions keep answering while an attacker holds more connections
//! than lintel has descriptors; slow, idle and half-sent connections are closed on time;
//! SIGTERM ends event streams, lets a request in flight finish and exits promptly, with
//! every answered decision kept.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{ADMIN, Backend, Database, Server, card, small_world};

/// The test's own process holds thousands of sockets: its soft descriptor limit goes up
/// to the hard one.
fn raise_own_descriptor_limit(needed: u64) {
    let limit = rlimit::increase_nofile_limit(u64::MAX).expect("the soft descriptor limit can be raised");
    assert!(limit >= needed, "this test needs {needed} descriptors; the hard limit allows {limit}");
}

fn decision_body() -> String {
    json!({"door": "front", "credential": card("04A1B2C3", Some("7"))}).to_string()
}

/// A decision's request head (the body, `decision_body()`, follows it).
fn decision_head(connection: &str) -> String {
    format!(
        "POST /api/v1/decisions HTTP/1.1\r\nhost: lintel\r\nauthorization: Bearer {ADMIN}\r\n\
         content-type: application/json\r\nconnection: {connection}\r\ncontent-length: {}\r\n\r\n",
        decision_body().len()
    )
}

/// One response read off a raw HTTP/1.1 connection (its body has a Content-Length):
/// status, lower-cased head, body. `None` when the connection ends first.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(u16, String, String)> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().expect("a length"))
                .expect("a content-length");
            if buf.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                buf.drain(..end + 4 + length);
                return Some((status, head, body));
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads until the peer closes the connection: how long that took (`None`: still open
/// after `limit`). What it sent meanwhile is returned too.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> (Option<Duration>, Vec<u8>) {
    let began = Instant::now();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(began.elapsed());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Err(_) => return (None, got),
            Ok(Ok(0) | Err(_)) => return (Some(began.elapsed()), got),
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
        }
    }
}

/// One decision on an open keep-alive connection, checked: how long it took.
async fn decide_on(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Duration {
    let began = Instant::now();
    let request = decision_head("keep-alive") + &decision_body();
    stream.write_all(request.as_bytes()).await.expect("the kept-alive connection takes a request");
    let answer = tokio::time::timeout(Duration::from_secs(10), read_response(stream, buf))
        .await
        .expect("a decision on the kept-alive connection answers within 10 s")
        .expect("the kept-alive connection stays open");
    check_granted(&answer);
    began.elapsed()
}

/// One decision on a connection of its own, checked: how long it took, connecting included.
async fn decide_on_new_connection(addr: SocketAddr) -> Duration {
    let began = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        let mut stream = TcpStream::connect(addr).await.expect("connects");
        let request = decision_head("close") + &decision_body();
        stream.write_all(request.as_bytes()).await.expect("sends");
        read_response(&mut stream, &mut Vec::new()).await.expect("an answer before the connection ends")
    })
    .await
    .expect("a decision on a new connection answers within 10 s");
    check_granted(&answer);
    began.elapsed()
}

fn check_granted((status, _, body): &(u16, String, String)) {
    assert_eq!(*status, 200, "{body}");
    let answer: Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(answer["reason"], "granted", "{answer}");
}

/// An attacker holding `n` connections from the same address as the honest client: half
/// idle, half slowloris (a header sent a byte every half second), each reopened as soon
/// as lintel closes it.
struct Attacker {
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicUsize>,
    held: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Attacker {
    fn start(addr: SocketAddr, n: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let opened = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(AtomicUsize::new(0));
        let tasks = (0..n)
            .map(|i| {
                let (stop, opened, held) = (stop.clone(), opened.clone(), held.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(Ok(mut stream)) =
                            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await
                        else {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        };
                        opened.fetch_add(1, Ordering::Relaxed);
                        held.fetch_add(1, Ordering::Relaxed);
                        hold(&mut stream, i % 2 == 1, &stop).await;
                        held.fetch_sub(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
            })
            .collect();
        Self { stop, opened, held, tasks }
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Holds a connection until lintel closes it (or answers anything) or the attack stops.
async fn hold(stream: &mut TcpStream, slowloris: bool, stop: &AtomicBool) {
    if slowloris && stream.write_all(b"POST /api/v1/decisions HTTP/1.1\r\nhost: lintel\r\nx-slow: ").await.is_err() {
        return;
    }
    let mut byte = [0u8; 1];
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut byte)).await {
            Ok(_) => return,
            Err(_) if slowloris => {
                if stream.write_all(b"a").await.is_err() {
                    return;
                }
            }
            Err(_) => {}
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Under a 1,024-descriptor limit, 2,500 idle and slowloris connections (from the honest
/// client's own address, so only the connection limit and what it sheds protect): every
/// decision answers, on new connections and on a kept-alive one. The timeouts are set
/// long, so that they are not what saves the decisions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_answer_while_an_attacker_holds_2500_connections() {
    const ATTACKER: usize = 2500;
    raise_own_descriptor_limit(ATTACKER as u64 + 500);
    let db = Database::new(Backend::Sqlite);
    let long = [("LINTEL_HTTP_HEADER_TIMEOUT_SECONDS", "600"), ("LINTEL_HTTP_IDLE_TIMEOUT_SECONDS", "600")];
    let s = Server::start_with_nofile(&db, &long, 1024);
    small_world(&s).await;
    let addr = s.addr();
    let mut kept = TcpStream::connect(addr).await.expect("connects");
    let mut kept_buf = Vec::new();
    decide_on(&mut kept, &mut kept_buf).await;

    let attacker = Attacker::start(addr, ATTACKER);
    let ramp = Instant::now();
    while attacker.opened.load(Ordering::Relaxed) < ATTACKER && ramp.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "attacker: {} connections opened in {:?}, {} held",
        attacker.opened.load(Ordering::Relaxed),
        ramp.elapsed(),
        attacker.held.load(Ordering::Relaxed)
    );

    let phase = Duration::from_secs(10);
    let fresh = tokio::spawn(async move {
        let began = Instant::now();
        let mut took = Vec::new();
        while began.elapsed() < phase {
            took.push(decide_on_new_connection(addr).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        took
    });
    let began = Instant::now();
    let mut on_kept = Vec::new();
    while began.elapsed() < phase {
        on_kept.push(decide_on(&mut kept, &mut kept_buf).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let on_new = fresh.await.expect("the new-connection decisions all answered");
    let (opened, held) = (attacker.opened.load(Ordering::Relaxed), attacker.held.load(Ordering::Relaxed));
    attacker.stop().await;

    let figures = |took: &[Duration]| {
        let mut sorted = took.to_vec();
        sorted.sort();
        format!(
            "{} decisions, p50 {:?}, p99 {:?}, max {:?}",
            sorted.len(),
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.99),
            sorted.last().unwrap()
        )
    };
    eprintln!(
        "decisions under attack (1024 descriptors, {ATTACKER} attacker connections, {opened} opened in all, {held} held \
         at the end, the rest waiting in the kernel): on the kept-alive connection {}; on new connections {}",
        figures(&on_kept),
        figures(&on_new)
    );
    assert!(on_kept.len() >= 20 && on_new.len() >= 20, "too few decisions: {} and {}", on_kept.len(), on_new.len());
    assert!(opened > ATTACKER, "lintel shed none of the attacker's connections ({opened} opened)");
    // And afterwards, all is as before.
    assert_eq!(s.decide("front", card("04A1B2C3", Some("7"))).await["reason"], "granted");
}

/// A half-sent header, one trickled forever, a silent connection, a kept-alive one left
/// idle, a body that never completes and a client that reads none of its answers are all
/// closed, each after its own timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_after_their_timeouts() {
    let db = Database::new(Backend::Sqlite);
    let env = [
        ("LINTEL_HTTP_HEADER_TIMEOUT_SECONDS", "1"),
        ("LINTEL_HTTP_IDLE_TIMEOUT_SECONDS", "3"),
        ("LINTEL_HTTP_BODY_TIMEOUT_SECONDS", "1"),
    ];
    let s = Server::start_with(&db, &env);
    small_world(&s).await;
    let addr = s.addr();
    let slack = Duration::from_secs(3);
    let header = Duration::from_secs(1);

    let silent = async {
        let mut c = TcpStream::connect(addr).await.unwrap();
        closed_within(&mut c, header + slack).await.0
    };
    let half = async {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nhost: lintel\r\n").await.unwrap();
        closed_within(&mut c, header + slack).await.0
    };
    let trickled = async {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nhost: lintel\r\nx-slow: ").await.unwrap();
        let began = Instant::now();
        while began.elapsed() < header + slack {
            if c.write_all(b"a").await.is_err() {
                return Some(began.elapsed());
            }
            let (closed, _) = closed_within(&mut c, Duration::from_millis(100)).await;
            if closed.is_some() {
                return Some(began.elapsed());
            }
        }
        None
    };
    let idle = async {
        let mut c = TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        decide_on(&mut c, &mut buf).await;
        closed_within(&mut c, Duration::from_secs(3) + slack).await.0
    };
    let slow_body = async {
        let mut c = TcpStream::connect(addr).await.unwrap();
        let head = decision_head("keep-alive");
        c.write_all(head.as_bytes()).await.unwrap();
        c.write_all(&decision_body().as_bytes()[..10]).await.unwrap();
        let began = Instant::now();
        let answer = tokio::time::timeout(header + slack, read_response(&mut c, &mut Vec::new())).await;
        (began.elapsed(), answer)
    };
    let unread = async {
        // A small window, so that lintel's answers back up at once.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut c = socket.connect(addr).await.unwrap();
        let asked = 200;
        c.write_all(b"GET /openapi.json HTTP/1.1\r\nhost: lintel\r\n\r\n".repeat(asked).as_slice()).await.unwrap();
        // Reads nothing for longer than the timeouts, then all there is: an answer handed
        // to the socket ends its request, so the connection is idle or mid-head meanwhile.
        tokio::time::sleep(Duration::from_secs(3) + slack).await;
        let (closed, got) = closed_within(&mut c, Duration::from_secs(10)).await;
        let answered = got.windows(12).filter(|w| w == b"HTTP/1.1 200").count();
        (closed.is_some(), answered, asked)
    };
    let (silent, half, trickled, idle, (body_took, body_answer), unread) =
        tokio::join!(silent, half, trickled, idle, slow_body, unread);
    eprintln!(
        "closed after: silent {silent:?}, half a header {half:?}, trickled header {trickled:?}, idle keep-alive {idle:?}; \
         slow body answered after {body_took:?}"
    );
    for (what, took) in [("a silent connection", silent), ("half a header", half), ("a trickled header", trickled)] {
        let took = took.unwrap_or_else(|| panic!("{what} was still open {:?} after the header timeout", slack));
        assert!(took >= header / 2, "{what} was closed after {took:?}, before the header timeout");
    }
    let (cut, answered, asked) = unread;
    eprintln!("a client reading nothing: cut {cut}, {answered} of {asked} answers came");
    assert!(cut && answered < asked, "a client reading nothing was not cut off: {answered} of {asked} answers came");
    let idle = idle.expect("an idle kept-alive connection was still open after the idle timeout");
    assert!(
        idle >= Duration::from_secs(2),
        "an idle connection was closed after {idle:?}: that is not the idle timeout"
    );
    let (status, head, body) = body_answer
        .expect("a body that never completes is answered within the body timeout")
        .expect("answered before the connection ends");
    assert_eq!(status, 408, "{body}");
    assert!(head.contains("content-type: application/problem+json"), "{head}");
    let problem: Value = serde_json::from_str(&body).expect("a problem document");
    assert_eq!(problem["status"], 408, "{problem}");
    // Nothing of this touched the decisions.
    assert_eq!(s.decide("front", card("04A1B2C3", Some("7"))).await["reason"], "granted");
}

/// SIGTERM with an event stream open, a half-sent request and a request in flight: the
/// stream ends cleanly, the request in flight is answered, and the process exits with 0
/// well within its grace; the decisions answered are in the database afterwards.
async fn shutdown_ends_streams_and_keeps_decisions(b: Backend) {
    let db = Database::new(b);
    let grace = Duration::from_secs(3);
    let s = Server::start_with(&db, &[("LINTEL_HTTP_SHUTDOWN_GRACE_SECONDS", "3")]);
    small_world(&s).await;
    let addr = s.addr();
    let before = s.decide("front", card("04A1B2C3", Some("7"))).await["event_id"].as_str().unwrap().to_owned();

    let mut stream = reqwest::Client::new()
        .get(format!("{}/api/v1/events/stream", s.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("the stream opens");
    assert_eq!(stream.status(), 200);
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"POST /api/v1/decisions HTTP/1.1\r\nhost: lintel\r\ncontent-le").await.unwrap();
    let mut in_flight = TcpStream::connect(addr).await.unwrap();
    let body = decision_body();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    in_flight.write_all(decision_head("keep-alive").as_bytes()).await.unwrap();
    in_flight.write_all(first).await.unwrap();
    // Its head is read before the signal.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let terminated = tokio::task::spawn_blocking(move || s.terminate());
    tokio::time::sleep(Duration::from_millis(300)).await;
    in_flight.write_all(rest).await.expect("the request in flight can be finished");
    let answer = tokio::time::timeout(Duration::from_secs(5), read_response(&mut in_flight, &mut Vec::new()))
        .await
        .expect("the request in flight is answered during the grace")
        .expect("answered before its connection ends");
    check_granted(&answer);
    let during: Value = serde_json::from_str(&answer.2).unwrap();
    let during = during["event_id"].as_str().unwrap().to_owned();

    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("the event stream ends at shutdown");
    assert!(ended.is_ok(), "the event stream was cut instead of ended: {ended:?}");
    let (closed, _) = closed_within(&mut half, Duration::from_secs(10)).await;
    assert!(closed.is_some(), "the half-sent request's connection is closed at shutdown");

    let (took, status) = terminated.await.unwrap();
    eprintln!("{b:?}: shutdown with a stream open, a half-sent request and one in flight took {took:?} ({status})");
    assert!(status.success(), "lintel exits with 0 after SIGTERM: {status}");
    assert!(took < grace + Duration::from_secs(5), "shutdown took {took:?} (grace {grace:?})");

    let s = Server::start(&db);
    let stored: Vec<String> = s.events().await.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    for id in [&before, &during] {
        assert!(stored.contains(id), "decision {id} was answered but is gone after the shutdown");
    }
}

crate::on_both_backends!(shutdown_ends_streams_and_keeps_decisions);
