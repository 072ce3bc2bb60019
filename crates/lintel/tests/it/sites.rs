//! Sites: doors belong to one (the default `main` unless told); events, attendance, the
//! door list and webhook endpoints can be limited to one; a site with doors stays.

use chrono::{Days, Utc};
use serde_json::{Value, json};

use crate::events::Stream;
use crate::harness::{Backend, Database, Server, small_world};

fn card() -> Value {
    json!({"kind": "card", "uid": "04A1B2C3", "revocation_code": "7"})
}

fn ids(items: &Value) -> Vec<String> {
    items.as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_owned()).collect()
}

/// How many entries an attendance answer counts, over all its days.
fn entries(attendance: &Value) -> u64 {
    attendance["days"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["people"].as_array().unwrap().iter())
        .map(|p| p["entries"].as_u64().unwrap())
        .sum()
}

async fn doors_events_and_attendance_are_told_apart_by_site(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let (status, sites) = s.get("/api/v1/sites").await;
    assert_eq!((status, ids(&sites)), (200, vec!["main".to_owned()]), "every lintel starts with one site");
    small_world(&s).await;
    assert_eq!(s.get("/api/v1/doors/front").await.1["site"], "main", "a door goes to the default site");

    let annex = s.ok("/api/v1/sites", json!({"id": "annex", "name": "Annex", "time_zone": "Europe/Berlin"}), 201).await;
    assert_eq!((annex["doors"].as_u64(), annex["time_zone"].as_str()), (Some(0), Some("Europe/Berlin")));
    for (bad, status) in [
        (json!({"id": "annex", "name": "Again"}), 409),
        (json!({"id": "moon", "name": "Moon", "time_zone": "Mars/Olympus"}), 422),
        (json!({"id": "bad id!", "name": "Bad"}), 422),
        (json!({"id": "x", "name": "X", "floor": 3}), 422),
    ] {
        let (got, problem) = s.post("/api/v1/sites", bad.clone()).await;
        assert_eq!(got, status, "{bad}: {problem}");
        assert!(problem["detail"].is_string(), "a problem document: {problem}");
    }
    assert_eq!(s.get("/api/v1/sites/moon").await.0, 404);

    // A door at an unknown site is refused whole.
    let (status, problem) = s.post("/api/v1/doors", json!({"id": "lab", "name": "Lab", "site": "nowhere"})).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(s.get("/api/v1/doors/lab").await.0, 404, "nothing half made");
    let lab = s.ok("/api/v1/doors", json!({"id": "lab", "name": "Lab", "site": "annex"}), 201).await;
    assert_eq!(lab["site"], "annex");
    s.ok("/api/v1/grants", json!({"person_id": "alice", "doors": ["lab"]}), 201).await;
    assert_eq!(ids(&s.get("/api/v1/doors?site=annex").await.1), vec!["lab"]);
    assert_eq!(ids(&s.get("/api/v1/doors?site=main").await.1), vec!["front"]);
    assert_eq!(s.get("/api/v1/sites/annex").await.1["doors"], 1);

    let mut at_the_annex = Stream::open(&s, "?kind=decision&site=annex", None).await;
    for door in ["front", "lab", "lab"] {
        assert_eq!(s.decide(door, card()).await["allowed"], true, "{door}");
    }
    let live: Vec<Value> = at_the_annex.take(2).await.iter().map(|m| m.json()).collect();
    assert!(live.iter().all(|e| e["door"] == "lab"), "the live stream keeps to the site: {live:?}");
    assert!(at_the_annex.next(std::time::Duration::from_millis(500)).await.is_none(), "and nothing else");
    let at = |site: &str| {
        let s = &s;
        let filter = format!("kind=decision&site={site}");
        async move { s.all_events(&filter).await.iter().map(|e| e["door"].as_str().unwrap().to_owned()).collect::<Vec<_>>() }
    };
    assert_eq!(at("annex").await, vec!["lab", "lab"]);
    assert_eq!(at("main").await, vec!["front"]);
    assert!(at("elsewhere").await.is_empty());

    let today = Utc::now().date_naive();
    let (from, to) = (today.checked_sub_days(Days::new(1)).unwrap(), today.checked_add_days(Days::new(1)).unwrap());
    let attendance = |site: &str| {
        let path = format!("/api/v1/attendance?from={from}&to={to}{site}");
        let s = &s;
        async move {
            let (status, body) = s.get(&path).await;
            assert_eq!(status, 200, "{path}: {body}");
            body
        }
    };
    let annex_days = attendance("&site=annex").await;
    assert_eq!((entries(&annex_days), annex_days["tz"].as_str()), (2, Some("Europe/Berlin")), "the site's time zone");
    assert_eq!(entries(&attendance("&site=main").await), 1);
    assert_eq!(entries(&attendance("").await), 3);
    assert_eq!(s.get(&format!("/api/v1/attendance?from={from}&to={to}&site=nowhere")).await.0, 422);

    // A site with doors stays; the default site always stays.
    let (status, problem) = s.delete("/api/v1/sites/annex").await;
    assert_eq!(status, 409, "{problem}");
    let (status, moved) = s.patch("/api/v1/doors/lab", json!({"site": "main"})).await;
    assert_eq!((status, moved["site"].as_str()), (200, Some("main")), "{moved}");
    assert_eq!(s.patch("/api/v1/doors/lab", json!({"site": "nowhere"})).await.0, 422);
    assert_eq!(s.get("/api/v1/doors/lab").await.1["site"], "main", "the refused move changed nothing");
    let (status, renamed) = s.patch("/api/v1/sites/annex", json!({"name": "Annex (old)", "time_zone": null})).await;
    assert_eq!((status, renamed["name"].as_str(), renamed.get("time_zone")), (200, Some("Annex (old)"), None));
    assert_eq!(s.delete("/api/v1/sites/annex").await.0, 204);
    assert_eq!(s.delete("/api/v1/sites/main").await.0, 409);
    let kinds: Vec<String> = s.all_events("").await.iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect();
    for kind in ["site.created", "site.updated", "site.deleted"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} recorded: {kinds:?}");
    }
}

crate::on_both_backends!(doors_events_and_attendance_are_told_apart_by_site);
