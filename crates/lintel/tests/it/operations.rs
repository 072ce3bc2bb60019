//! Operating lintel: liveness, readiness with the index's size, Prometheus metrics, and
//! the OpenAPI document (which must describe every route of the HTTP contract, and only
//! routes that exist).

use std::collections::{BTreeMap, HashMap};

use serde_json::json;

use crate::bad_input::send;
use crate::doors::{create_door, dead_url};
use crate::harness::{Backend, Database, Server, card, small_world};

async fn health_and_readiness(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    // Neither needs a token: load balancers and orchestrators ask them.
    let health = send(s.client.get(format!("{}/healthz", s.base))).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.text.trim(), "ok");
    let ready = |s: &Server| {
        let request = s.client.get(format!("{}/readyz", s.base));
        async move {
            let answer = send(request).await;
            assert_eq!(answer.status, 200, "{}", answer.text);
            assert_eq!(answer.body["status"], "ready");
            answer.body["index"].clone()
        }
    };
    assert_eq!(ready(&s).await, json!({"people": 0, "credentials": 0, "doors": 0, "groups": 0, "grants": 0}));
    small_world(&s).await;
    s.ok("/api/v1/people", json!({"id": "bob", "name": "Bob"}), 201).await;
    s.ok("/api/v1/people/bob/credentials", json!({"kind": "pin", "pin": "2468"}), 201).await;
    s.ok("/api/v1/groups", json!({"id": "staff", "name": "Staff", "doors": ["front"]}), 201).await;
    s.ok("/api/v1/grants", json!({"group_id": "staff"}), 201).await;
    assert_eq!(ready(&s).await, json!({"people": 2, "credentials": 2, "doors": 1, "groups": 1, "grants": 2}));
    assert_eq!(s.delete("/api/v1/groups/staff").await.0, 204);
    assert_eq!(ready(&s).await, json!({"people": 2, "credentials": 2, "doors": 1, "groups": 0, "grants": 1}));
    // A restart loads the same index from the store.
    s.kill();
    let s = Server::start(&db);
    assert_eq!(ready(&s).await, json!({"people": 2, "credentials": 2, "doors": 1, "groups": 0, "grants": 1}));
}

/// A metric sample: name and labels.
type Sample = (String, BTreeMap<String, String>);

fn parse_metrics(text: &str) -> HashMap<Sample, f64> {
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad metrics line {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let rest = rest.strip_suffix('}').unwrap_or_else(|| panic!("bad labels in {line:?}"));
                let labels = rest
                    .split(',')
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("bad label in {line:?}"));
                        (k.to_owned(), v.trim_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        samples.insert((name, labels), value);
    }
    samples
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

async fn metrics_count_decisions(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    small_world(&s).await;
    s.ok("/api/v1/people/alice/credentials", json!({"kind": "pin", "pin": "4711"}), 201).await;
    for _ in 0..3 {
        s.decide("front", card("04A1B2C3", Some("7"))).await;
    }
    s.decide("front", card("04A1B2C3", Some("6"))).await;
    s.decide("front", card("DEADBEEF", None)).await;
    s.decide("back", card("04A1B2C3", Some("7"))).await;
    for guess in ["0000", "1111", "2222", "3333", "4444", "5555", "6666"] {
        s.decide("front", json!({"kind": "pin", "pin": guess})).await;
    }
    let dry = json!({"door": "front", "credential": card("04A1B2C3", Some("7")), "dry_run": true});
    s.ok("/api/v1/decisions", dry.clone(), 200).await;
    s.ok("/api/v1/decisions", dry, 200).await;
    create_door(&s, "dead", json!({"kind": "shelly", "url": dead_url()}), 5).await;
    assert_eq!(s.post("/api/v1/doors/dead/open", json!({})).await.0, 502);

    let answer = send(s.client.get(format!("{}/metrics", s.base))).await;
    assert_eq!(answer.status, 200, "metrics need no token");
    assert!(answer.content_type().starts_with("text/plain"), "{}", answer.content_type());
    let text = answer.text;
    assert!(text.contains("# TYPE lintel_decisions_total counter"), "{text}");
    assert!(text.contains("# TYPE lintel_decision_seconds histogram"), "{text}");
    let samples = parse_metrics(&text);

    // The counter agrees with the log, reason by reason (admin openings are not asked).
    let mut expected: HashMap<(String, String), f64> = HashMap::new();
    let events = s.events().await;
    for e in events.iter().filter(|e| e["kind"] == "decision" && e["data"].get("by").is_none()) {
        let result = if e["allowed"] == true { "allowed" } else { "denied" };
        *expected.entry((result.to_owned(), e["reason"].as_str().unwrap().to_owned())).or_default() += 1.0;
    }
    assert_eq!(expected.get(&("allowed".into(), "granted".into())), Some(&3.0));
    assert!(expected.contains_key(&("denied".into(), "rate_limited".into())), "{events:?}");
    let mut counted: HashMap<(String, String), f64> = HashMap::new();
    for ((_, l), v) in samples.iter().filter(|((name, _), _)| name == "lintel_decisions_total") {
        *counted.entry((l["result"].clone(), l["reason"].clone())).or_default() += v;
    }
    // By door: the doors lintel has by name, any other as `unknown` (a probe for door ids
    // must not make series without bound).
    let by_door = |door: &str, result: &str, reason: &str| {
        let key =
            ("lintel_decisions_total".to_owned(), labels(&[("door", door), ("result", result), ("reason", reason)]));
        samples.get(&key).copied()
    };
    assert_eq!(by_door("front", "allowed", "granted"), Some(3.0), "{text}");
    assert_eq!(by_door("unknown", "denied", "unknown_door"), Some(1.0), "{text}");
    assert!(!text.contains("door=\"back\""), "{text}");
    for name in ["lintel_decisions_total", "lintel_decision_seconds", "lintel_index_people"] {
        assert!(text.contains(&format!("# HELP {name} ")), "no HELP for {name}: {text}");
    }
    // Refusals under a lock are recorded once per lock and counted every time.
    let limited = ("denied".to_owned(), "rate_limited".to_owned());
    assert!(counted[&limited] >= expected[&limited], "{text}");
    let without = |m: &HashMap<(String, String), f64>| {
        m.iter().filter(|(k, _)| **k != limited).map(|(k, v)| (k.clone(), *v)).collect::<HashMap<_, _>>()
    };
    assert_eq!(without(&counted), without(&expected), "{text}");
    for reason in ["revoked_card", "unknown_credential", "unknown_door"] {
        assert!(counted.contains_key(&("denied".into(), reason.into())), "{reason} is not counted: {text}");
    }

    // The histogram counts every question, dry runs too, in cumulative buckets.
    let asked = 3 + 3 + 7 + 2;
    assert_eq!(samples.get(&("lintel_decision_seconds_count".into(), labels(&[]))), Some(&(asked as f64)), "{text}");
    assert!(samples.get(&("lintel_decision_seconds_sum".into(), labels(&[]))).is_some_and(|v| *v >= 0.0));
    let mut buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|((name, _), _)| name == "lintel_decision_seconds_bucket")
        .map(|((_, l), v)| {
            let le = &l["le"];
            (if le == "+Inf" { f64::INFINITY } else { le.parse().expect("le") }, *v)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() >= 2, "{text}");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "buckets are cumulative: {buckets:?}");
    assert_eq!(buckets.last().copied(), Some((f64::INFINITY, asked as f64)));

    assert_eq!(
        samples.get(&("lintel_driver_failures_total".into(), labels(&[("driver", "shelly")]))),
        Some(&1.0),
        "{text}"
    );
    assert_eq!(samples.get(&("lintel_index_people".into(), labels(&[]))), Some(&1.0), "{text}");

    // Work for other systems, by target and state: a webhook endpoint that does not answer
    // keeps its delivery pending, and the gauge says so.
    let endpoint = s
        .ok(
            "/api/v1/webhooks",
            json!({"url": "http://127.0.0.1:9/hook", "kinds": ["decision"], "allow_http": true}),
            201,
        )
        .await;
    let target = format!("webhook:{}", endpoint["endpoint"]["id"].as_str().unwrap());
    s.decide("front", card("04A1B2C3", Some("7"))).await;
    let pending = ("lintel_outbox_items".to_owned(), labels(&[("target", &target), ("state", "pending")]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = send(s.client.get(format!("{}/metrics", s.base))).await.text;
        if parse_metrics(&text).get(&pending) == Some(&1.0) {
            assert!(text.contains("# HELP lintel_outbox_items "), "{text}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no pending delivery for {target}: {text}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Every route of the HTTP contract, with its methods.
const CONTRACT: &[(&str, &[&str])] = &[
    ("/api/v1/people", &["get", "post"]),
    ("/api/v1/people/{id}", &["get", "patch", "delete"]),
    ("/api/v1/people/{id}/credentials", &["get", "post"]),
    ("/api/v1/credentials/{id}", &["get", "delete"]),
    ("/api/v1/doors", &["get", "post"]),
    ("/api/v1/doors/{id}", &["get", "patch", "delete"]),
    ("/api/v1/doors/{id}/open", &["post"]),
    ("/api/v1/groups", &["get", "post"]),
    ("/api/v1/groups/{id}", &["get", "delete"]),
    ("/api/v1/groups/{id}/members/{person_id}", &["put", "delete"]),
    ("/api/v1/grants", &["get", "post"]),
    ("/api/v1/grants/{id}", &["get", "delete"]),
    ("/api/v1/decisions", &["post"]),
    ("/open/{door}", &["post"]),
    ("/api/v1/events", &["get"]),
    ("/api/v1/events/stream", &["get"]),
    ("/api/v1/attendance", &["get"]),
    ("/healthz", &["get"]),
    ("/readyz", &["get"]),
    ("/metrics", &["get"]),
    ("/scim/v2/Users", &["get", "post"]),
    ("/scim/v2/Users/{id}", &["get", "put", "patch", "delete"]),
    ("/scim/v2/Groups", &["get", "post"]),
    ("/scim/v2/Groups/{id}", &["get", "put", "patch", "delete"]),
    ("/scim/v2/ServiceProviderConfig", &["get"]),
    ("/scim/v2/ResourceTypes", &["get"]),
    ("/scim/v2/Schemas", &["get"]),
];

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn openapi_describes_every_route(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let answer = send(s.client.get(format!("{}/openapi.json", s.base))).await;
    assert_eq!(answer.status, 200, "the document needs no token");
    assert!(answer.content_type().starts_with("application/json"));
    let doc = answer.body;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{}", doc["openapi"]);
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in CONTRACT {
        let item = paths.get(*path).unwrap_or_else(|| panic!("{path} is not in the OpenAPI document"));
        for method in *methods {
            let op = item.get(*method).unwrap_or_else(|| panic!("{method} {path} is not in the OpenAPI document"));
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path} has no responses");
            if path.starts_with("/api/") {
                let security = op["security"].as_array().unwrap_or_else(|| panic!("{method} {path} has no security"));
                assert!(security.iter().any(|s| s.get("admin").is_some()), "{method} {path}: {security:?}");
            }
        }
    }
    let open = &paths["/open/{door}"]["post"]["security"];
    assert!(open.as_array().is_some_and(|s| s.iter().any(|s| s.get("personal_secret").is_some())), "{open}");
    let schemes = &doc["components"]["securitySchemes"];
    for scheme in ["admin", "personal_secret"] {
        assert_eq!(schemes[scheme]["type"], "http", "{schemes}");
        assert_eq!(schemes[scheme]["scheme"].as_str().map(str::to_lowercase).as_deref(), Some("bearer"));
    }
    for schema in ["Person", "Door", "Credential", "Grant", "Event", "DecisionRequest", "DecisionResponse", "Problem"] {
        assert!(doc["components"]["schemas"].get(schema).is_some(), "schema {schema} is missing");
    }
    let reasons = &doc["components"]["schemas"]["Reason"]["enum"];
    for reason in ["granted", "unknown_credential", "no_grant", "rate_limited", "credential_revoked"] {
        assert!(reasons.as_array().is_some_and(|r| r.contains(&json!(reason))), "{reasons}");
    }

    // Every documented operation is routed: without a token it is refused (401), or open
    // (200), never an unknown route or method.
    for (path, item) in paths {
        for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
            let concrete =
                path.split('/').map(|seg| if seg.starts_with('{') { "x" } else { seg }).collect::<Vec<_>>().join("/");
            let concrete = if *path == "/api/v1/attendance" {
                format!("{concrete}?from=2026-01-01&to=2026-01-02")
            } else {
                concrete
            };
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let answer = send(s.client.request(method.clone(), format!("{}{concrete}", s.base))).await;
            // Hooks of integrations this server has not configured say so.
            let unconfigured_hook = path.starts_with("/hooks/")
                && matches!(answer.status, 404 | 503)
                && answer.text.contains("not configured");
            // A signed operation is its own authentication: an empty one is malformed.
            let self_authenticating = *path == "/api/v1/operations" && answer.status == 400;
            assert!(
                matches!(answer.status, 200 | 401) || unconfigured_hook || self_authenticating,
                "{method} {concrete} (documented as {path}): {} {}",
                answer.status,
                answer.text
            );
        }
    }
}

/// The served document passes openapi-spec-validator (PyPI), so that clients generated from
/// it are right: every response described, query parameters in the query, path parameters
/// declared, operation ids unique, problem answers as `application/problem+json`.
async fn openapi_document_is_valid(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let (status, doc) = s.get("/openapi.json").await;
    assert_eq!(status, 200, "{doc}");
    let file = crate::harness::write_file(&db.dir, "openapi.json", &doc.to_string());
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--validation-errors", "all"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed (pip install openapi-spec-validator): {e}"));
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("OK"),
        "openapi-spec-validator (pip install openapi-spec-validator) refuses the document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

crate::on_both_backends!(health_and_readiness, metrics_count_decisions, openapi_describes_every_route;
    sqlite only: openapi_document_is_valid);
