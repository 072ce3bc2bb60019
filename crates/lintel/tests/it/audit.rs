//! The audit trail: every change names who made it (a token, the CLI, an integration),
//! edits keep what changed before and after without secrets, and the trail is read with
//! filters or exported as CSV.

use serde_json::{Value, json};

use crate::harness::{Backend, Database, Server, lintel, small_world};
use crate::roles::tokens;

async fn as_token(s: &Server, token: &str, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let response =
        s.client.request(method, format!("{}{path}", s.base)).bearer_auth(token).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn kinds(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect()
}

async fn every_change_names_who_made_it_and_what_changed(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    small_world(&s).await;
    let tokens = tokens(&db, &s).await;
    let token = |role: &str| tokens.iter().find(|(r, _)| *r == role).unwrap().1.clone();
    let (desk, admin) = (token("front_desk"), token("admin"));

    let (status, _) =
        as_token(&s, &desk, reqwest::Method::POST, "/api/v1/people", json!({"id": "dan", "name": "Dan"})).await;
    assert_eq!(status, 201);
    let card = json!({"kind": "card", "uid": "0D0D0D0D"});
    assert_eq!(as_token(&s, &desk, reqwest::Method::POST, "/api/v1/people/dan/credentials", card).await.0, 201);
    let relay = json!({"id": "lab", "name": "Lab", "driver": {"kind": "shelly", "url": "http://192.0.2.7",
        "generation": 2, "channel": 0, "password": "relay-secret-1"}});
    assert_eq!(as_token(&s, &admin, reqwest::Method::POST, "/api/v1/doors", relay).await.0, 201);
    let edit = json!({"name": "Laboratory", "driver": {"kind": "shelly", "url": "http://192.0.2.7",
        "generation": 2, "channel": 0, "password": "relay-secret-2"}});
    assert_eq!(as_token(&s, &admin, reqwest::Method::PATCH, "/api/v1/doors/lab", edit).await.0, 200);
    s.decide("front", json!({"kind": "card", "uid": "04A1B2C3", "revocation_code": "7"})).await;
    let import = db.dir.join("people.csv");
    std::fs::write(&import, "id,name,email,card_uid\nerin,Erin,erin@example.org,0E0E0E0E\n").unwrap();
    let imported = lintel()
        .args(["import", "--quiet", "--database-url", &db.url])
        .arg(&import)
        .current_dir(&db.dir)
        .output()
        .unwrap();
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));

    // By who: the front desk's token made Dan and his card, and nothing else.
    let (status, by_desk) = s.get("/api/v1/audit?actor=token:t-front_desk").await;
    assert_eq!(status, 200, "{by_desk}");
    assert_eq!(kinds(&by_desk), ["person.created", "credential.issued"]);
    // The trail holds changes only, each with its actor; decisions are not in it.
    let all = s.get("/api/v1/audit?limit=1000").await.1;
    let items = all["items"].as_array().unwrap();
    assert!(items.iter().all(|e| e["actor"].is_string() && e["kind"] != "decision"), "{all}");
    let actors: Vec<&str> = items.iter().map(|e| e["actor"].as_str().unwrap()).collect();
    for who in ["token:environment", "token:t-front_desk", "token:t-admin", "cli"] {
        assert!(actors.contains(&who), "{who} in {actors:?}");
    }
    // What an edit changed, before and after; never the relay's password.
    let edited = items.iter().find(|e| e["kind"] == "door.updated").expect("the door's edit");
    assert_eq!(
        (&edited["data"]["before"]["name"], &edited["data"]["after"]["name"]),
        (&json!("Lab"), &json!("Laboratory"))
    );
    let text = all.to_string();
    assert!(!text.contains("relay-secret"), "a driver's secret in the audit trail: {text}");
    // A door's history, and the filters of the event log.
    assert_eq!(kinds(&s.get("/api/v1/audit?door=lab").await.1), ["door.created", "door.updated"]);
    assert_eq!(kinds(&s.get("/api/v1/audit?person_id=dan&kind=credential.issued").await.1), ["credential.issued"]);

    // The same as CSV.
    let csv = s
        .client
        .get(format!("{}/api/v1/audit.csv?actor=token:t-admin", s.base))
        .bearer_auth(crate::harness::ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let csv = csv.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "id,at,actor,kind,person_id,door,credential_id,grant_id,data");
    assert_eq!(lines.len(), 3, "door.created and door.updated: {csv}");
    assert!(lines[1..].iter().all(|l| l.contains(",token:t-admin,door.")), "{csv}");
    assert!(!csv.contains("relay-secret"), "{csv}");
    // Webhook endpoints' settings are changes too; their secrets never show.
    let hook = json!({"url": "http://127.0.0.1:9/hook", "kinds": ["decision"], "allow_http": true});
    let (status, made) = as_token(&s, &admin, reqwest::Method::POST, "/api/v1/webhooks", hook).await;
    assert_eq!(status, 201, "{made}");
    let endpoint = format!("/api/v1/webhooks/{}", made["endpoint"]["id"].as_str().unwrap());
    let more_kinds = json!({"kinds": ["decision", "door.*"]});
    assert_eq!(as_token(&s, &admin, reqwest::Method::PATCH, &endpoint, more_kinds).await.0, 200);
    assert_eq!(as_token(&s, &admin, reqwest::Method::DELETE, &endpoint, Value::Null).await.0, 204);
    let hooks = s.get("/api/v1/audit?actor=token:t-admin&limit=1000").await.1;
    assert_eq!(kinds(&hooks)[2..], ["webhook.created", "webhook.updated", "webhook.deleted"], "{hooks}");
    assert_eq!(hooks["items"][3]["data"]["after"]["kinds"], json!(["decision", "door.*"]), "{hooks}");
    assert!(!hooks.to_string().contains(made["secret"].as_str().unwrap()), "a webhook secret in the trail");
    // Reading the trail is for those who may read.
    let display = token("display");
    assert_eq!(as_token(&s, &display, reqwest::Method::GET, "/api/v1/audit", Value::Null).await.0, 403);
}

crate::on_both_backends!(every_change_names_who_made_it_and_what_changed);
