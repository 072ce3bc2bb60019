//! Several lintel nodes on one PostgreSQL database, and the CLI beside a SQLite server:
//! what one process writes, the others decide on, patched in through the change feed
//! rather than by reloading their whole index.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::events::{Stream, ids, message_ids, seq, walk};
use crate::harness::{Backend, Database, Server, card, lintel, small_world};
use crate::mqtt::{Broker, Controller, lintel_key, serve, world};
use crate::stations::{login_client, ui_session};

/// A metric (name and labels, as exported) as a node's metrics say (0 before the first).
async fn metric(s: &Server, series: &str) -> f64 {
    let text = s.client.get(format!("{}/metrics", s.base)).send().await.expect("metrics").text().await.expect("text");
    let prefix = format!("{series} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0.0, |n| n.trim().parse().expect("a number"))
}

/// `lintel_index_updates_total{how="..."}` of a node.
async fn index_updates(s: &Server, how: &str) -> u64 {
    metric(s, &format!("lintel_index_updates_total{{how=\"{how}\"}}")).await as u64
}

/// A dry-run decision (nothing recorded) for Alice's card at the front door.
async fn alice_at_front(s: &Server) -> Value {
    let ask = json!({"door": "front", "credential": card("04A1B2C3", Some("7")), "dry_run": true});
    let (status, answer) = s.post("/api/v1/decisions", ask).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// How long until `s` answers Alice's card with `reason`; fails past `limit`.
async fn until_reason(s: &Server, reason: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let answer = alice_at_front(s).await;
        if answer["reason"] == reason {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "still {answer} after {limit:?}, waiting for {reason}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Three nodes whose timers are a minute: only PostgreSQL's notifications can tell them
/// of each other's writes in time.
async fn writes_on_one_node_are_decided_on_the_others(b: Backend) {
    let db = Database::new(b);
    let quiet = [("LINTEL_FOLLOW_INTERVAL_MS", "60000")];
    let (a, node_b, c) =
        (Server::start_with(&db, &quiet), Server::start_with(&db, &quiet), Server::start_with(&db, &quiet));
    small_world(&a).await;
    until_reason(&c, "granted", Duration::from_secs(2)).await;

    // Suspensions written on one node, seen on another, both ways, measured.
    let mut waits = Vec::new();
    for round in 0..20 {
        let (writer, reader) = if round % 2 == 0 { (&a, &c) } else { (&c, &node_b) };
        let started = Instant::now();
        let status = if round % 4 < 2 { "suspended" } else { "active" };
        let (code, person) = writer.patch("/api/v1/people/alice", json!({"status": status})).await;
        assert_eq!(code, 200, "{person}");
        let written = started.elapsed();
        let reason = if status == "suspended" { "person_suspended" } else { "granted" };
        waits.push(until_reason(reader, reason, Duration::from_secs(2)).await + written);
    }
    waits.sort();
    eprintln!(
        "write on one node -> decision on another: p50 {:?}, p99 {:?}, max {:?} ({} writes)",
        percentile(&waits, 0.5),
        percentile(&waits, 0.99),
        waits[waits.len() - 1],
        waits.len()
    );

    // A revocation on B reaches A and C.
    let credentials = node_b.get("/api/v1/people/alice/credentials").await.1;
    let id = credentials[0]["id"].as_str().expect("an id").to_owned();
    assert_eq!(node_b.delete(&format!("/api/v1/credentials/{id}")).await.0, 200);
    for s in [&a, &c] {
        until_reason(s, "credential_revoked", Duration::from_secs(2)).await;
    }
    // What a decision on one node uses up, the others' indexes know: a dry run on C is
    // refused for want of passes without asking the database.
    a.ok("/api/v1/doors", json!({"id": "lab", "name": "Lab"}), 201).await;
    a.ok("/api/v1/people/alice/credentials", json!({"kind": "pin", "pin": "2468"}), 201).await;
    a.ok("/api/v1/grants", json!({"person_id": "alice", "doors": ["lab"], "passes": 1}), 201).await;
    let pin = json!({"kind": "pin", "pin": "2468"});
    let start = Instant::now();
    loop {
        let (_, dry) = c.post("/api/v1/decisions", json!({"door": "lab", "credential": pin, "dry_run": true})).await;
        if dry["allowed"] == true {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(2), "{dry}");
        // An unknown PIN counts as a guess: stay under the limit.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(a.decide("lab", pin.clone()).await["allowed"], true, "the one pass");
    let start = Instant::now();
    loop {
        let (_, dry) = c.post("/api/v1/decisions", json!({"door": "lab", "credential": pin, "dry_run": true})).await;
        if dry["reason"] == "no_passes_left" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(2), "C still counts the pass as unused: {dry}");
    }
    for s in [&a, &node_b, &c] {
        assert_eq!(index_updates(s, "reload").await, 0, "patched, never reloaded");
    }
    assert!(index_updates(&c, "patch").await > 0);
}

/// An event stream on one node carries every node's events, in order, once each.
async fn every_nodes_events_reach_every_nodes_stream(b: Backend) {
    let db = Database::new(b);
    let quiet = [("LINTEL_FOLLOW_INTERVAL_MS", "60000")];
    let (a, node_b, c) =
        (Server::start_with(&db, &quiet), Server::start_with(&db, &quiet), Server::start_with(&db, &quiet));
    small_world(&a).await;
    let start = a.events().await.last().expect("events")["id"].as_str().expect("an id").to_owned();
    let mut stream = Stream::open(&node_b, "", None).await;
    until_reason(&c, "granted", Duration::from_secs(2)).await;
    let writes = (0..10).map(|i| {
        let (a, c) = (&a, &c);
        async move {
            let (writer, other) = if i % 2 == 0 { (a, c) } else { (c, a) };
            writer.ok("/api/v1/people", json!({"id": format!("p{i}"), "name": "P"}), 201).await;
            other.decide("front", card("04A1B2C3", Some("7"))).await;
        }
    });
    futures::future::join_all(writes).await;
    let expected: Vec<Value> = walk(&node_b, "", 1000)
        .await
        .into_iter()
        .filter(|e| seq(e["id"].as_str().expect("an id")) > seq(&start))
        .collect();
    assert_eq!(expected.len(), 20, "ten people and ten decisions, on two other nodes");
    let got = stream.take(expected.len()).await;
    assert_eq!(message_ids(&got), ids(&expected), "B's stream: every event of A and C, in order, once");
    assert!(stream.next(Duration::from_millis(300)).await.is_none(), "nothing extra");
}

/// A guesser spreading wrong secrets over three nodes meets one limit: after the fifth,
/// every node refuses the sixth.
async fn guesses_spread_over_nodes_meet_one_limit(b: Backend) {
    let db = Database::new(b);
    let nodes = [Server::start(&db), Server::start(&db), Server::start(&db)];
    small_world(&nodes[0]).await;
    let guess = async |s: &Server, n: usize| {
        let response = s
            .client
            .post(format!("{}/open/front", s.base))
            .bearer_auth(format!("lsk_wrong-guess-{n}"))
            .send()
            .await
            .expect("answers");
        response.status().as_u16()
    };
    for n in 0..5 {
        assert_eq!(guess(&nodes[n % 3], n).await, 403, "wrong secret {n}");
    }
    for (i, s) in nodes.iter().enumerate() {
        assert_eq!(guess(s, 5 + i).await, 429, "node {i} refuses after five wrong ones anywhere");
    }
}

/// The status of the dashboard for a session cookie (no redirects followed), and its page.
async fn dashboard(s: &Server, cookie: &str) -> (u16, String) {
    let answer = login_client().get(format!("{}/ui/", s.base)).header("cookie", cookie).send().await.expect("answers");
    (answer.status().as_u16(), answer.text().await.unwrap_or_default())
}

/// A web UI session lives in the store: it works on every node, outlives a restart, and
/// signing out on one node ends it on all (on SQLite, one node restarted).
async fn a_ui_session_outlives_a_restart_and_ends_everywhere(b: Backend) {
    let db = Database::new(b);
    let first = Server::start(&db);
    let cookie = ui_session(&first).await;
    assert_eq!(dashboard(&first, &cookie).await.0, 200);
    drop(first);
    let restarted = Server::start(&db);
    let (status, page) = dashboard(&restarted, &cookie).await;
    assert_eq!(status, 200, "the session outlived the restart");
    let other = match b {
        Backend::Postgres => Some(Server::start(&db)),
        Backend::Sqlite => None,
    };
    let signs_out = other.as_ref().unwrap_or(&restarted);
    if let Some(other) = &other {
        assert_eq!(dashboard(other, &cookie).await.0, 200, "made on one node, good on another");
    }
    let csrf =
        page.split("name=\"_csrf\" value=\"").nth(1).and_then(|rest| rest.split('"').next()).expect("a form token");
    let out = login_client()
        .post(format!("{}/ui/logout", signs_out.base))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("_csrf={csrf}"))
        .send()
        .await
        .expect("answers");
    assert_eq!(out.status().as_u16(), 303, "signed out");
    assert_eq!(dashboard(&restarted, &cookie).await.0, 303, "ended everywhere: back to the sign-in page");
}

/// The CLI writes the database a running SQLite server uses: the server patches its index
/// with what the command wrote.
async fn the_clis_writes_reach_a_running_server(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    small_world(&s).await;
    let out = lintel()
        .args(["backup-codes", "--door", "front", "--count", "1", "--database-url", &db.url])
        .current_dir(&db.dir)
        .output()
        .expect("lintel runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let code = String::from_utf8(out.stdout).expect("text").trim().to_owned();
    let ask = json!({"door": "front", "credential": {"kind": "backup_code", "code": code}, "dry_run": true});
    let start = Instant::now();
    loop {
        let (_, answer) = s.post("/api/v1/decisions", ask.clone()).await;
        if answer["allowed"] == true {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(3), "the CLI's code is still refused: {answer}");
        // Unknown codes count as guesses: ask seldom enough to stay under the limit (the
        // server looks for others' writes every 200 ms).
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(index_updates(&s, "reload").await, 0, "patched, not reloaded");
    assert!(index_updates(&s, "patch").await > 0);
}

/// Which of `nodes` holds the MQTT link (waits until one does).
async fn link_holder(nodes: &[Option<Server>]) -> usize {
    let start = Instant::now();
    loop {
        let mut holders = Vec::new();
        for (i, s) in nodes.iter().enumerate() {
            if let Some(s) = s
                && metric(s, "lintel_lease_held{lease=\"mqtt\"}").await == 1.0
            {
                holders.push(i);
            }
        }
        match holders.as_slice() {
            [one] => return *one,
            [] => assert!(start.elapsed() < Duration::from_secs(40), "no node took the MQTT link"),
            more => panic!("nodes {more:?} all hold the MQTT link"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn node(nodes: &[Option<Server>], i: usize) -> &Server {
    nodes[i].as_ref().expect("running")
}

/// Ann's decisions at the front door: (decided by lintel, decided by the controller offline).
async fn ann_at_front(s: &Server) -> (Vec<Value>, Vec<Value>) {
    let decisions = s.all_events("kind=decision&door=front").await;
    decisions.into_iter().filter(|e| e["person_id"] == "ann").partition(|e| e["data"]["offline"] != true)
}

/// Three nodes, one MQTT link: the node holding it answers the controller, an operator's
/// open on another node is handed to it; when it is killed another node takes the link
/// over, and every tap is recorded once (offline ones uploaded once).
async fn the_mqtt_link_moves_when_its_node_dies(b: Backend) {
    let db = Database::new(b);
    let broker = Broker::start(&db.dir);
    let mut nodes: Vec<Option<Server>> = (0..3).map(|_| Some(serve(&db, &broker, "lintel-it"))).collect();
    world(node(&nodes, 0)).await;
    let mut ctl = Controller::start(&broker, &lintel_key(&db), &db.dir.join("ctl"));
    ctl.list_with_cards(1);
    let holder = link_holder(&nodes).await;
    let mut by_lintel = 0;
    let tap = ctl.tap("front", "04A1B2C3");
    assert_eq!((tap["source"].as_str(), tap["allowed"].as_bool()), (Some("lintel"), Some(true)), "{tap}");
    by_lintel += 1;

    // An operator on a node without the link opens the door: the holder drives it, once.
    let other = (holder + 1) % 3;
    let opened = node(&nodes, other).ok("/api/v1/doors/front/open", json!({"seconds": 3}), 200).await;
    assert_eq!((opened["opened"].as_bool(), opened["confirmed"].as_bool()), (Some(true), Some(true)), "{opened}");
    assert_eq!(ctl.event("command")["action"], json!({"action": "open", "seconds": 3}));

    nodes[holder].take().expect("running").kill();
    let killed = Instant::now();
    let mut offline = 0;
    loop {
        let tap = ctl.tap("front", "04A1B2C3");
        assert_eq!(tap["allowed"], true, "{tap}");
        if tap["source"] == "lintel" {
            by_lintel += 1;
            break;
        }
        offline += 1;
        assert!(killed.elapsed() < Duration::from_secs(45), "no node answers taps since the kill");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("MQTT link taken over {:?} after its node was killed ({offline} taps decided offline)", killed.elapsed());
    let new_holder = link_holder(&nodes).await;
    assert_ne!(new_holder, holder);
    assert!(offline > 0, "the controller decided alone while no node held the link");
    let all_uploaded = |l: &Value| l["event"] == "uploaded" && l["pending"] == 0;
    if !ctl.printed().iter().any(all_uploaded) {
        ctl.wait_for("the offline decisions uploaded", all_uploaded);
    }
    for _ in 0..3 {
        assert_eq!(ctl.tap("front", "04A1B2C3")["source"], "lintel");
        by_lintel += 1;
    }
    let survivor = (new_holder + 1..new_holder + 3).map(|i| i % 3).find(|i| nodes[*i].is_some()).expect("a node");
    let opened = node(&nodes, survivor).ok("/api/v1/doors/front/open", json!({"seconds": 2}), 200).await;
    assert_eq!(opened["confirmed"], true, "{opened}");
    assert_eq!(ctl.event("command")["action"], json!({"action": "open", "seconds": 2}));

    let (online, uploaded) = ann_at_front(node(&nodes, survivor)).await;
    assert_eq!(online.len(), by_lintel, "each tap lintel answered, once: {online:#?}");
    let mut ids: Vec<&str> = uploaded.iter().filter_map(|e| e["data"]["offline_id"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!((uploaded.len(), ids.len()), (offline, offline), "each offline decision uploaded once");
    let opened = node(&nodes, survivor).all_events("kind=door.opened&door=front").await;
    assert_eq!(opened.len(), 2, "each open driven once: {opened:#?}");
    assert!(opened.iter().all(|e| e["data"]["confirmed"] == true), "{opened:#?}");
}

/// A fake of the platform's and the chat workspace's APIs that answers with nothing and
/// counts the calls, by "METHOD path".
async fn counting_upstream() -> (String, std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>) {
    let calls: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>> = Default::default();
    let seen = calls.clone();
    let app = axum::Router::new().fallback(move |method: axum::http::Method, uri: axum::http::Uri| {
        let seen = seen.clone();
        async move {
            *seen.lock().unwrap().entry(format!("{method} {}", uri.path())).or_default() += 1;
            match uri.path() {
                "/users.list" => {
                    axum::Json(json!({"ok": true, "members": [], "response_metadata": {"next_cursor": ""}}))
                }
                _ => axum::Json(json!([])),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, calls)
}

/// Three nodes with the platform's sync and the workspace's reconciliation every minute:
/// one node does each, so the upstreams are called once a minute, not three times.
async fn upstreams_are_called_once_per_period_by_all_nodes(b: Backend) {
    let db = Database::new(b);
    let (url, calls) = counting_upstream().await;
    let env = [
        ("LINTEL_COBOT_BASE_URL", url.as_str()),
        ("LINTEL_COBOT_TOKEN", "cobot-token"),
        ("LINTEL_COBOT_SYNC_MINUTES", "1"),
        ("LINTEL_SLACK_SIGNING_SECRET", "slack-signing-secret-for-tests-0123456789"),
        ("LINTEL_SLACK_BOT_TOKEN", "xoxb-test"),
        ("LINTEL_SLACK_API_BASE_URL", url.as_str()),
        ("LINTEL_SLACK_RECONCILE_MINUTES", "1"),
    ];
    let started = Instant::now();
    let _nodes = [Server::start_with(&db, &env), Server::start_with(&db, &env), Server::start_with(&db, &env)];
    // One period and a margin, short of a second period.
    tokio::time::sleep(Duration::from_secs(80).saturating_sub(started.elapsed())).await;
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.get("GET /api/memberships"), Some(&1), "one sync in the first minute: {calls:?}");
    assert_eq!(calls.get("GET /users.list"), Some(&1), "one reconciliation in the first minute: {calls:?}");
}

crate::on_both_backends!(the_clis_writes_reach_a_running_server, a_ui_session_outlives_a_restart_and_ends_everywhere);

/// Several nodes share PostgreSQL only (SQLite is one process's database).
macro_rules! on_postgres_only {
    ($($test:ident),* $(,)?) => {
        mod several {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if crate::harness::postgres_skipped() {
                        return;
                    }
                    super::$test(crate::harness::Backend::Postgres).await
                }
            )*
        }
    };
}

on_postgres_only!(
    writes_on_one_node_are_decided_on_the_others,
    every_nodes_events_reach_every_nodes_stream,
    the_mqtt_link_moves_when_its_node_dies,
    upstreams_are_called_once_per_period_by_all_nodes,
    guesses_spread_over_nodes_meet_one_limit,
);
