//! The walk-through, every reason code reachable over HTTP, passes under concurrency,
//! durability across kill -9.

use serde_json::{Value, json};

use crate::harness::{Backend, Database, Server, card, small_world};

async fn walkthrough_and_reasons(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    small_world(&s).await;
    let ok = s.decide("front", card("04a1b2c3", Some("7"))).await;
    assert_eq!(ok["allowed"], true, "{ok}");
    assert_eq!(ok["reason"], "granted");
    assert_eq!(ok["person_id"], "alice");
    assert!(ok["event_id"].is_string());

    assert_eq!(s.decide("front", card("04A1B2C3", Some("6"))).await["reason"], "revoked_card");
    assert_eq!(s.decide("front", card("04A1B2C3", None)).await["reason"], "revoked_card");
    assert_eq!(s.decide("front", card("DEADBEEF", None)).await["reason"], "unknown_credential");
    assert_eq!(s.decide("back", card("04A1B2C3", Some("7"))).await["reason"], "unknown_door");

    // A dry run answers without recording.
    let before = s.events().await.len();
    let (status, dry) = s
        .post("/api/v1/decisions", json!({"door": "front", "credential": card("04A1B2C3", Some("7")), "dry_run": true}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(dry["allowed"], true);
    assert!(dry["event_id"].is_null());
    assert_eq!(s.events().await.len(), before);

    // Suspension, skills, schedules and validity, each visible to the very next decision.
    s.patch("/api/v1/people/alice", json!({"status": "suspended"})).await;
    assert_eq!(s.decide("front", card("04A1B2C3", Some("7"))).await["reason"], "person_suspended");
    s.patch("/api/v1/people/alice", json!({"status": "active"})).await;
    s.patch("/api/v1/doors/front", json!({"required_skill": "laser"})).await;
    assert_eq!(s.decide("front", card("04A1B2C3", Some("7"))).await["reason"], "missing_skill");
    s.patch("/api/v1/people/alice", json!({"skills": ["laser"]})).await;
    assert_eq!(s.decide("front", card("04A1B2C3", Some("7"))).await["reason"], "granted");

    s.ok("/api/v1/doors", json!({"id": "lab", "name": "Lab"}), 201).await;
    assert_eq!(s.decide("lab", card("04A1B2C3", Some("7"))).await["reason"], "no_grant");
    s.ok(
        "/api/v1/grants",
        json!({"person_id": "alice", "doors": ["lab"], "schedule": {"tz": "Europe/Berlin", "rules": [{"weekdays": ["mon"], "from": "08:00", "to": "20:00"}]}}),
        201,
    )
    .await;
    // Asking about another moment is a question (a dry run); recorded, it is refused.
    let at = |t: &str| json!({"door": "lab", "credential": card("04A1B2C3", Some("7")), "at": t, "dry_run": true});
    let before = s.events().await.len();
    let (status, refused) = s
        .post(
            "/api/v1/decisions",
            json!({"door": "lab", "credential": card("04A1B2C3", Some("7")), "at": "2026-11-23T07:30:00Z"}),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    assert!(refused["detail"].as_str().is_some_and(|d| d.contains("dry_run")), "{refused}");
    let soon = (chrono::Utc::now() + chrono::Duration::hours(3)).to_rfc3339();
    let (status, _) = s
        .post("/api/v1/decisions", json!({"door": "front", "credential": card("04A1B2C3", Some("7")), "at": soon}))
        .await;
    assert_eq!(status, 422);
    assert_eq!(s.events().await.len(), before, "a refused question recorded nothing");
    // A reader's clock a little off is still now.
    let near = (chrono::Utc::now() - chrono::Duration::seconds(2)).to_rfc3339();
    let recorded = s
        .ok("/api/v1/decisions", json!({"door": "front", "credential": card("04A1B2C3", Some("7")), "at": near}), 200)
        .await;
    assert!(recorded["event_id"].is_string(), "{recorded}");
    // Monday 2026-11-23, 07:30 UTC = 08:30 in Berlin; 19:30 UTC = 20:30.
    assert_eq!(s.ok("/api/v1/decisions", at("2026-11-23T07:30:00Z"), 200).await["reason"], "granted");
    assert_eq!(s.ok("/api/v1/decisions", at("2026-11-23T19:30:00Z"), 200).await["reason"], "outside_schedule");

    s.ok("/api/v1/doors", json!({"id": "annex", "name": "Annex"}), 201).await;
    s.ok(
        "/api/v1/grants",
        json!({"person_id": "alice", "doors": ["annex"], "valid_from": "2026-12-01T00:00:00+01:00", "valid_until": "2027-01-01T00:00:00+01:00"}),
        201,
    )
    .await;
    let at = |t: &str| json!({"door": "annex", "credential": card("04A1B2C3", Some("7")), "at": t, "dry_run": true});
    assert_eq!(s.ok("/api/v1/decisions", at("2026-11-30T22:59:59Z"), 200).await["reason"], "not_yet_valid");
    assert_eq!(s.ok("/api/v1/decisions", at("2026-11-30T23:00:00Z"), 200).await["reason"], "granted");
    assert_eq!(s.ok("/api/v1/decisions", at("2026-12-31T23:00:00Z"), 200).await["reason"], "expired");

    // Opening as an admin takes an empty body, whatever the content type says (as curl
    // sends it with a JSON header).
    let opened = s
        .client
        .post(format!("{}/api/v1/doors/front/open", s.base))
        .bearer_auth(crate::harness::ADMIN)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 200);

    // Revocation takes effect at once, and the card stays known as revoked.
    let creds = s.get("/api/v1/people/alice/credentials").await.1;
    let id = creds[0]["id"].as_str().unwrap().to_owned();
    let (status, revoked) = s.delete(&format!("/api/v1/credentials/{id}")).await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(s.decide("front", card("04A1B2C3", Some("7"))).await["reason"], "credential_revoked");
}

async fn groups_and_group_grants(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    s.ok("/api/v1/doors", json!({"id": "front", "name": "Front"}), 201).await;
    s.ok("/api/v1/doors", json!({"id": "side", "name": "Side"}), 201).await;
    s.ok("/api/v1/groups", json!({"id": "members", "name": "Members", "doors": ["front", "side"]}), 201).await;
    s.ok("/api/v1/grants", json!({"group_id": "members"}), 201).await;
    s.ok("/api/v1/people", json!({"id": "bob", "name": "Bob"}), 201).await;
    s.ok("/api/v1/people/bob/credentials", json!({"kind": "card", "uid": "0A0B0C0D"}), 201).await;
    assert_eq!(s.decide("side", card("0A0B0C0D", None)).await["reason"], "no_grant");
    assert_eq!(s.put("/api/v1/groups/members/members/bob").await.0, 204);
    assert_eq!(s.decide("side", card("0A0B0C0D", None)).await["reason"], "granted");
    let person = s.get("/api/v1/people/bob").await.1;
    assert_eq!(person["groups"], json!(["members"]));
    assert_eq!(s.delete("/api/v1/groups/members/members/bob").await.0, 204);
    assert_eq!(s.decide("side", card("0A0B0C0D", None)).await["reason"], "no_grant");
    // Deleting a door is structural: the index reloads and the door is unknown at once.
    assert_eq!(s.put("/api/v1/groups/members/members/bob").await.0, 204);
    assert_eq!(s.delete("/api/v1/doors/side").await.0, 204);
    assert_eq!(s.decide("side", card("0A0B0C0D", None)).await["reason"], "unknown_door");
    assert_eq!(s.decide("front", card("0A0B0C0D", None)).await["reason"], "granted");
    // Deleting the person revokes the card.
    assert_eq!(s.delete("/api/v1/people/bob").await.0, 204);
    let gone = s.decide("front", card("0A0B0C0D", None)).await;
    assert_eq!(gone["reason"], "credential_revoked", "{gone}");
}

async fn passes_are_used_exactly_once_under_concurrent_taps(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    s.ok("/api/v1/doors", json!({"id": "front", "name": "Front"}), 201).await;
    s.ok("/api/v1/people", json!({"id": "pat", "name": "Pat"}), 201).await;
    s.ok("/api/v1/people/pat/credentials", json!({"kind": "card", "uid": "11223344"}), 201).await;
    let grant = s.ok("/api/v1/grants", json!({"person_id": "pat", "doors": ["front"], "passes": 3}), 201).await;
    let taps = (0..12).map(|_| s.decide("front", card("11223344", None)));
    let answers = futures::future::join_all(taps).await;
    let allowed = answers.iter().filter(|a| a["allowed"] == true).count();
    assert_eq!(allowed, 3, "{answers:?}");
    assert!(answers.iter().filter(|a| a["allowed"] == false).all(|a| a["reason"] == "no_passes_left"));
    let id = grant["id"].as_str().unwrap();
    let stored = s.get(&format!("/api/v1/grants/{id}")).await.1;
    assert_eq!(stored["passes_used"], 3);
    // A dry run never uses a pass.
    let events = s.events().await;
    assert_eq!(events.iter().filter(|e| e["kind"] == "decision" && e["allowed"] == true).count(), 3);
}

async fn a_used_up_pass_grant_falls_back_on_another(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    s.ok("/api/v1/doors", json!({"id": "front", "name": "Front"}), 201).await;
    s.ok("/api/v1/people", json!({"id": "bob", "name": "Bob"}), 201).await;
    s.ok("/api/v1/people/bob/credentials", json!({"kind": "card", "uid": "B0B0B0B0"}), 201).await;
    // The one-pass grant expires first, so it is preferred; then the big one takes over.
    let one = s
        .ok(
            "/api/v1/grants",
            json!({"person_id": "bob", "doors": ["front"], "passes": 1, "valid_until": "2030-01-01T00:00:00Z"}),
            201,
        )
        .await;
    let many = s.ok("/api/v1/grants", json!({"person_id": "bob", "doors": ["front"], "passes": 100}), 201).await;
    let taps = (0..20).map(|_| s.decide("front", card("B0B0B0B0", None)));
    let answers = futures::future::join_all(taps).await;
    assert!(answers.iter().all(|a| a["allowed"] == true), "a pass was left on the other grant: {answers:?}");
    let used = |g: &Value| g["id"].as_str().unwrap().to_owned();
    let (one, many) = (used(&one), used(&many));
    assert_eq!(s.get(&format!("/api/v1/grants/{one}")).await.1["passes_used"], 1);
    assert_eq!(s.get(&format!("/api/v1/grants/{many}")).await.1["passes_used"], 19);
    let via_many = answers.iter().filter(|a| a["grant_id"] == many.as_str()).count();
    assert_eq!(via_many, 19, "each answer names the grant whose pass it used: {answers:?}");
}

async fn decisions_survive_kill_9(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    small_world(&s).await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(s.decide("front", card("04A1B2C3", Some("7"))).await["event_id"].as_str().unwrap().to_owned());
    }
    s.kill();
    let s = Server::start(&db);
    let stored: Vec<String> = s.events().await.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    for id in &ids {
        assert!(stored.contains(id), "event {id} was answered but is gone after kill -9");
    }
    // The index is rebuilt from the store: the card still opens the door.
    assert_eq!(s.decide("front", card("04A1B2C3", Some("7"))).await["reason"], "granted");
}

/// Editing a grant's hours is an edit: same id, the next decision follows the new hours,
/// the audit trail has before and after, and a bad patch changes nothing.
async fn a_grants_hours_are_edited_in_place(b: Backend) {
    use chrono::Datelike;
    let db = Database::new(b);
    let s = Server::start(&db);
    small_world(&s).await;
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let today = chrono::Utc::now().weekday().num_days_from_monday() as usize;
    let not_today: Vec<&str> = days.iter().enumerate().filter(|(i, _)| *i != today).map(|(_, d)| *d).collect();
    s.ok("/api/v1/people", json!({"id": "hal", "name": "Hal"}), 201).await;
    s.ok("/api/v1/people/hal/credentials", json!({"kind": "card", "uid": "4A4A4A4A"}), 201).await;
    let schedule =
        |weekdays: &[&str]| json!({"tz": "UTC", "rules": [{"weekdays": weekdays, "from": "00:00", "to": "24:00"}]});
    let grant = s
        .ok("/api/v1/grants", json!({"person_id": "hal", "doors": ["front"], "schedule": schedule(&not_today)}), 201)
        .await;
    let path = format!("/api/v1/grants/{}", grant["id"].as_str().unwrap());
    let tap = json!({"kind": "card", "uid": "4A4A4A4A"});
    assert_eq!(s.decide("front", tap.clone()).await["reason"], "outside_schedule");

    let patch = |body: Value| s.patch(&path, body);
    for (body, why) in [
        (json!({"schedule": {"tz": "Mars/Olympus", "rules": []}}), "an unknown zone"),
        (json!({"doors": ["front"], "door_group": "g"}), "doors and a door group"),
        (json!({"doors": []}), "no doors"),
        (json!({"valid_from": "2030-01-02T00:00:00Z", "valid_until": "2030-01-01T00:00:00Z"}), "backwards"),
        (json!({"person_id": "alice"}), "the holder is not an edit"),
    ] {
        let (status, problem) = patch(body).await;
        assert_eq!(status, 422, "{why}: {problem}");
    }
    assert_eq!(s.get(&path).await.1["schedule"], schedule(&not_today), "a refused patch changed nothing");

    let (status, edited) = patch(json!({"schedule": schedule(&days)})).await;
    assert_eq!((status, &edited["id"]), (200, &grant["id"]), "{edited}");
    assert_eq!(s.decide("front", tap.clone()).await["reason"], "granted", "the next decision has the new hours");
    let trail = s.get("/api/v1/audit?kind=grant.updated").await.1;
    let change = &trail["items"][0]["data"];
    assert_eq!(change["before"]["schedule"], schedule(&not_today), "{trail}");
    assert_eq!(change["after"]["schedule"], schedule(&days), "{trail}");
    assert_eq!(trail["items"][0]["actor"], "token:environment");

    let (status, cleared) = patch(json!({"schedule": null, "valid_until": "2000-01-01T00:00:00Z"})).await;
    assert_eq!(status, 200, "{cleared}");
    assert!(cleared.get("schedule").is_none(), "null clears the schedule: {cleared}");
    assert_eq!(s.decide("front", tap).await["reason"], "expired");
    assert_eq!(patch(json!({})).await.0, 200);
    assert_eq!(s.patch("/api/v1/grants/g-999999", json!({})).await.0, 404);
}

crate::on_both_backends!(
    a_grants_hours_are_edited_in_place,
    walkthrough_and_reasons,
    groups_and_group_grants,
    passes_are_used_exactly_once_under_concurrent_taps,
    a_used_up_pass_grant_falls_back_on_another,
    decisions_survive_kill_9,
);
