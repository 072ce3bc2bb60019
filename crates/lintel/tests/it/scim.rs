//! SCIM 2.0 provisioning against a running lintel: the compliance checker `scim2-tester`
//! (PyPI, an implementation lintel did not write) passes every check it runs; the request
//! sequences Okta and Entra ID send when a user is assigned, changed, deactivated and
//! removed do what an operator expects at the door; bad input gets SCIM errors and
//! changes nothing.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Backend, Database, Server, lintel};

/// A token with the `scim` scope, made by the CLI as an operator would, once the server
/// takes it.
async fn scim_token(db: &Database, s: &Server) -> String {
    let out = tokio::task::block_in_place(|| {
        lintel()
            .args(["token", "create", "--name", "idp", "--scope", "scim", "--database-url", &db.url])
            .current_dir(&db.dir)
            .output()
            .unwrap()
    });
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let idp = Idp { s, token: token.clone() };
    for _ in 0..100 {
        if idp.call("GET", "/ServiceProviderConfig", None).await.0 == 200 {
            return token;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server never took the scim token");
}

/// An identity provider's client: SCIM requests with its token.
struct Idp<'a> {
    s: &'a Server,
    token: String,
}

impl Idp<'_> {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.s.client.request(method, format!("{}/scim/v2{path}", self.s.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.header("content-type", "application/scim+json").body(body.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        if status >= 400 {
            let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            assert_eq!(ct, "application/scim+json", "a SCIM error's content type ({status})");
        }
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>, want: u16) -> Value {
        let (status, answer) = self.call(method, path, body).await;
        assert_eq!(status, want, "{method} {path}: {answer}");
        answer
    }

    async fn patch(&self, path: &str, ops: Value) -> Value {
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
        self.ok("PATCH", path, Some(body), 200).await
    }
}

/// A SCIM error document with this status and, when given, this scimType.
fn scim_error(answer: &Value, status: u16, scim_type: Option<&str>) {
    assert_eq!(answer["schemas"], json!(["urn:ietf:params:scim:api:messages:2.0:Error"]), "{answer}");
    assert_eq!(answer["status"], json!(status.to_string()), "{answer}");
    if let Some(t) = scim_type {
        assert_eq!(answer["scimType"], json!(t), "{answer}");
    }
}

/// A door, a group `staff` granted it, and a card for a person.
async fn door_for_staff(s: &Server) {
    s.ok("/api/v1/doors", json!({"id": "front", "name": "Front door"}), 201).await;
    s.ok("/api/v1/groups", json!({"id": "staff", "name": "Staff"}), 201).await;
    s.ok("/api/v1/grants", json!({"group_id": "staff", "doors": ["front"]}), 201).await;
}

async fn give_card(s: &Server, person: &str, uid: &str) {
    s.ok(&format!("/api/v1/people/{person}/credentials"), json!({"kind": "card", "uid": uid}), 201).await;
}

async fn card_opens(s: &Server, uid: &str) -> bool {
    let d = s.decide("front", json!({"kind": "card", "uid": uid})).await;
    d["allowed"] == json!(true)
}

/// scim2-tester runs every check for what lintel announces; none fails.
async fn scim2_tester_passes(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let token = scim_token(&db, &s).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/scim_tester.py");
    let base = format!("{}/scim/v2", s.base);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").args([script, &base, &token]).output()
    })
    .await
    .unwrap()
    .expect("python3 runs scim2-tester");
    assert!(out.status.success(), "scim2-tester: {}", String::from_utf8_lossy(&out.stderr));
    let results: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let failed: Vec<&Value> =
        results.iter().filter(|r| matches!(r["status"].as_str(), Some("ERROR" | "CRITICAL" | "DEVIATION"))).collect();
    let passed = results.iter().filter(|r| r["status"] == "SUCCESS").count();
    let skipped = results.iter().filter(|r| r["status"] == "SKIPPED").count();
    eprintln!("scim2-tester: {} checks, {passed} passed, {skipped} skipped, {} failed", results.len(), failed.len());
    assert!(failed.is_empty(), "scim2-tester failures:\n{failed:#?}");
    // It ran the resource checks, not only discovery: create, read, replace, patch, delete.
    assert!(passed >= 40, "only {passed} checks passed: {results:#?}");
}

/// What Okta sends: a lookup before the create, a create, a full PUT on a profile change,
/// a group push, and deactivation as a `replace` with a value object.
async fn okta_assigns_changes_deactivates_and_removes(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    door_for_staff(&s).await;
    let alice = json!({"id": "alice", "name": "Alice", "email": "ann@example.org", "external_ids": {"crm": "7"}});
    s.ok("/api/v1/people", alice, 201).await;
    let idp = Idp { s: &s, token: scim_token(&db, &s).await };

    let found =
        idp.ok("GET", "/Users?filter=userName%20eq%20%22ann%40example.org%22&startIndex=1&count=100", None, 200).await;
    assert_eq!(found["totalResults"], 0, "{found}");
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "ann@example.org",
        "name": {"givenName": "Ann", "familyName": "Lovelace"},
        "emails": [{"primary": true, "value": "ann@example.org", "type": "work"}],
        "displayName": "Ann Lovelace",
        "locale": "en-US",
        "externalId": "00u1ab2cd3",
        "groups": [],
        "password": {"value": "never-kept"},
        "active": true
    });
    let created = idp.ok("POST", "/Users", Some(user.clone()), 201).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_ne!(id, "alice", "a person another source vouches for is not taken over by email");
    assert_eq!(created["userName"], "ann@example.org");
    assert_eq!(created["name"]["givenName"], "Ann");
    assert!(created.get("password").is_none() && created.get("locale").is_none(), "not kept: {created}");
    assert!(created["meta"]["version"].as_str().unwrap().starts_with("W/"), "{created}");
    // The same userName again (in another case) is a uniqueness error.
    let mut again = user.clone();
    again["userName"] = json!("ANN@example.org");
    scim_error(&idp.ok("POST", "/Users", Some(again), 409).await, 409, Some("uniqueness"));

    let person = s.get(&format!("/api/v1/people/{id}")).await.1;
    assert_eq!(person["name"], "Ann Lovelace");
    assert_eq!(person["email"], "ann@example.org");
    assert_eq!(person["external_ids"]["scim"], "00u1ab2cd3", "{person}");
    assert_eq!(person["status"], "active");

    // Okta finds her again by userName (any case) and by externalId.
    let found = idp.ok("GET", "/Users?filter=userName%20eq%20%22Ann%40Example.org%22", None, 200).await;
    assert_eq!(found["Resources"][0]["id"], json!(id), "{found}");
    let found = idp.ok("GET", "/Users?filter=externalId%20eq%20%2200u1ab2cd3%22", None, 200).await;
    assert_eq!(found["totalResults"], 1, "{found}");

    // The group push: Okta creates the group with its members. It is a group of its own,
    // never the operator's "Staff" (the provider may not change who is in that one); the
    // operator grants it the door.
    let group = idp
        .ok(
            "POST",
            "/Groups",
            Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Staff", "members": [{"value": id, "display": "ann@example.org"}]})),
            201,
        )
        .await;
    let gid = group["id"].as_str().unwrap().to_owned();
    assert!(gid.starts_with("staff-"), "{group}");
    scim_error(&idp.ok("GET", "/Groups/staff", None, 404).await, 404, None);
    let listed = idp.ok("GET", "/Groups", None, 200).await;
    assert_eq!(listed["totalResults"], 1, "only the provider's groups: {listed}");
    s.ok("/api/v1/grants", json!({"group_id": gid, "doors": ["front"]}), 201).await;
    give_card(&s, &id, "0A0B0C0D").await;
    assert!(card_opens(&s, "0A0B0C0D").await, "a member of the pushed group opens the front door");

    // A profile change: the whole user again.
    let mut changed = user.clone();
    changed["displayName"] = json!("Ann King");
    changed["name"] = json!({"givenName": "Ann", "familyName": "King"});
    let replaced = idp.ok("PUT", &format!("/Users/{id}"), Some(changed), 200).await;
    assert_eq!(replaced["name"]["familyName"], "King");
    assert_eq!(s.get(&format!("/api/v1/people/{id}")).await.1["name"], "Ann King");

    // Okta's membership changes: remove by a value filter, add back.
    idp.patch(&format!("/Groups/{gid}"), json!([{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]))
        .await;
    assert!(!card_opens(&s, "0A0B0C0D").await, "out of the group, the card opens nothing");
    idp.patch(&format!("/Groups/{gid}"), json!([{"op": "add", "path": "members", "value": [{"value": id}]}])).await;
    assert!(card_opens(&s, "0A0B0C0D").await);
    // Only people the provider made are members it may name.
    let alice = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": "alice"}]}]});
    scim_error(&idp.ok("PATCH", &format!("/Groups/{gid}"), Some(alice), 400).await, 400, Some("invalidValue"));

    // An operator's suspension stands through the provider's next change.
    assert_eq!(s.patch(&format!("/api/v1/people/{id}"), json!({"status": "suspended"})).await.0, 200);
    idp.patch(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "title", "value": "CTO"},
        {"op": "replace", "path": "displayName", "value": "Ann K."}]),
    )
    .await;
    assert_eq!(s.get(&format!("/api/v1/people/{id}")).await.1["status"], "suspended");
    assert!(!card_opens(&s, "0A0B0C0D").await);
    assert_eq!(s.patch(&format!("/api/v1/people/{id}"), json!({"status": "active"})).await.0, 200);
    assert!(card_opens(&s, "0A0B0C0D").await);

    // Deactivation: the card is refused at once, and the person is offboarded.
    let deactivated = idp.patch(&format!("/Users/{id}"), json!([{"op": "replace", "value": {"active": false}}])).await;
    assert_eq!(deactivated["active"], false);
    assert!(!card_opens(&s, "0A0B0C0D").await, "a deactivated user's card is refused");
    let person = s.get(&format!("/api/v1/people/{id}")).await.1;
    assert_eq!(person["status"], "suspended", "{person}");
    let offboarded = s.all_events("kind=person.offboarded").await;
    assert_eq!(offboarded.len(), 1, "{offboarded:?}");
    assert_eq!(offboarded[0]["data"]["source"], "scim", "{offboarded:?}");

    // Reactivated: active again, the revoked card stays revoked (a new one is issued).
    idp.patch(&format!("/Users/{id}"), json!([{"op": "replace", "value": {"active": true}}])).await;
    assert_eq!(s.get(&format!("/api/v1/people/{id}")).await.1["status"], "active");
    assert!(!card_opens(&s, "0A0B0C0D").await);

    // Removed: no longer a SCIM user; the person and their history stay, suspended.
    idp.ok("DELETE", &format!("/Users/{id}"), None, 204).await;
    scim_error(&idp.ok("GET", &format!("/Users/{id}"), None, 404).await, 404, None);
    let person = s.get(&format!("/api/v1/people/{id}")).await.1;
    assert_eq!(person["status"], "suspended", "{person}");
    assert!(person["external_ids"].get("scim").is_none(), "{person}");
}

/// What Entra ID sends: PATCH with paths and string booleans, members added and removed
/// by value, filters on externalId; deactivation is `active` "False".
async fn entra_assigns_changes_deactivates_and_removes(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    door_for_staff(&s).await;
    // Known to lintel before the provider was connected: the create adopts her.
    s.ok("/api/v1/people", json!({"id": "bea", "name": "Bea", "email": "bea@contoso.com"}), 201).await;
    give_card(&s, "bea", "1A2B3C4D").await;
    let idp = Idp { s: &s, token: scim_token(&db, &s).await };

    let found = idp.ok("GET", "/Users?filter=userName+eq+%22bea%40contoso.com%22", None, 200).await;
    assert_eq!(found["totalResults"], 0, "not a SCIM user yet: {found}");
    let created = idp
        .ok(
            "POST",
            "/Users",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                "externalId": "bea",
                "userName": "bea@contoso.com",
                "active": true,
                "displayName": "Bea Contoso",
                "emails": [{"primary": true, "type": "work", "value": "bea@contoso.com"}],
                "meta": {"resourceType": "User"},
                "name": {"formatted": "Bea Contoso", "familyName": "Contoso", "givenName": "Bea"},
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Ops"}
            })),
            201,
        )
        .await;
    assert_eq!(created["id"], "bea", "the person lintel knew by that email: {created}");
    let people = s.get("/api/v1/people?limit=10").await.1;
    assert_eq!(people["items"].as_array().unwrap().len(), 1, "no second person: {people}");

    let group = idp
        .ok(
            "POST",
            "/Groups",
            Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "externalId": "8aa1", "displayName": "Night shift", "members": []})),
            201,
        )
        .await;
    let gid = group["id"].as_str().unwrap().to_owned();
    assert!(gid.starts_with("night-shift-"), "{gid}");
    let found =
        idp.ok("GET", "/Groups?filter=displayName+eq+%22Night+shift%22&excludedAttributes=members", None, 200).await;
    assert_eq!(found["Resources"][0]["id"], json!(gid), "{found}");

    // Searches by POST: one type, and both at once.
    let search = |filter: &str| {
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": filter, "attributes": ["displayName"], "startIndex": 1, "count": 10})
    };
    let found = idp.ok("POST", "/Users/.search", Some(search("userName eq \"BEA@contoso.com\"")), 200).await;
    assert_eq!(
        found["Resources"],
        json!([{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "bea",
        "displayName": "Bea Contoso"}])
    );
    let found =
        idp.ok("POST", "/.search", Some(search("displayName sw \"Bea\" or displayName sw \"Night\"")), 200).await;
    let ids: Vec<&str> = found["Resources"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["bea", gid.as_str()], "{found}");

    s.ok("/api/v1/grants", json!({"group_id": gid, "doors": ["front"]}), 201).await;
    idp.patch(&format!("/Groups/{gid}"), json!([{"op": "Add", "path": "members", "value": [{"value": "bea"}]}])).await;
    assert!(card_opens(&s, "1A2B3C4D").await);
    let changed = idp
        .patch(
            "/Users/bea",
            json!([
                {"op": "Replace", "path": "displayName", "value": "Bea Azure"},
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "bea.azure@contoso.com"},
                {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 0100"},
                {"op": "Replace", "path": "name.familyName", "value": "Azure"}
            ]),
        )
        .await;
    assert_eq!(changed["emails"][0]["value"], "bea.azure@contoso.com", "{changed}");
    assert_eq!(changed["phoneNumbers"], json!([{"type": "mobile", "value": "+1 555 0100"}]), "{changed}");
    assert_eq!(changed["name"], json!({"formatted": "Bea Contoso", "familyName": "Azure", "givenName": "Bea"}));
    let person = s.get("/api/v1/people/bea").await.1;
    assert_eq!((person["name"].as_str(), person["email"].as_str()), (Some("Bea Azure"), Some("bea.azure@contoso.com")));
    assert_eq!(person["phone"], "+1 555 0100");

    idp.patch(&format!("/Groups/{gid}"), json!([{"op": "Remove", "path": "members", "value": [{"value": "bea"}]}]))
        .await;
    assert!(!card_opens(&s, "1A2B3C4D").await);
    idp.patch(&format!("/Groups/{gid}"), json!([{"op": "Add", "path": "members", "value": [{"value": "bea"}]}])).await;

    // If-Match: a change against an old version is refused, and changes nothing.
    let old = changed["meta"]["version"].as_str().unwrap().to_owned();
    idp.patch("/Users/bea", json!([{"op": "Replace", "path": "displayName", "value": "Bea B."}])).await;
    let resp = s
        .client
        .patch(format!("{}/scim/v2/Users/bea", s.base))
        .bearer_auth(&idp.token)
        .header("if-match", &old)
        .body(
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Replace", "path": "displayName", "value": "Stale"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 412);
    assert_eq!(s.get("/api/v1/people/bea").await.1["name"], "Bea B.");

    // Entra's deactivation: a path and a string boolean.
    // With attributes lintel does not keep in the same request (Entra's default mappings).
    let off = idp
        .patch("/Users/bea", json!([
            {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Gone"},
            {"op": "Add", "path": "addresses[type eq \"work\"].formatted", "value": "1 Main St"},
            {"op": "Replace", "path": "active", "value": "False"}
        ]))
        .await;
    assert_eq!(off["active"], false);
    assert!(!card_opens(&s, "1A2B3C4D").await, "a deactivated user's card is refused at once");
    assert_eq!(s.get("/api/v1/people/bea").await.1["status"], "suspended");

    idp.ok("DELETE", "/Users/bea", None, 204).await;
    let group = idp.ok("GET", &format!("/Groups/{gid}"), None, 200).await;
    assert!(group.get("members").is_none(), "a deleted user leaves the provider's groups: {group}");
    idp.ok("DELETE", &format!("/Groups/{gid}"), None, 204).await;
    idp.ok("GET", &format!("/Groups/{gid}"), None, 404).await;
}

/// Malformed bodies, filters and paths get SCIM errors (4xx) and change nothing.
async fn bad_input_gets_scim_errors_and_changes_nothing(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let idp = Idp { s: &s, token: scim_token(&db, &s).await };
    let ann =
        idp.ok("POST", "/Users", Some(json!({"userName": "ann", "displayName": "Ann", "active": true})), 201).await;
    let id = ann["id"].as_str().unwrap().to_owned();
    let before = idp.ok("GET", &format!("/Users/{id}"), None, 200).await;

    let raw = |method: &str, path: &str, body: &str| {
        let req = s
            .client
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), format!("{}/scim/v2{path}", s.base))
            .bearer_auth(&idp.token)
            .header("content-type", "application/scim+json")
            .body(body.to_owned());
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, e) = raw("POST", "/Users", "{not json").await;
    assert_eq!(status, 400);
    scim_error(&e, 400, Some("invalidSyntax"));
    let (status, e) = raw("POST", "/Users", "[1, 2]").await;
    assert_eq!(status, 400, "{e}");
    scim_error(
        &idp.ok("POST", "/Users", Some(json!({"displayName": "No name"})), 400).await,
        400,
        Some("invalidValue"),
    );
    scim_error(&idp.ok("POST", "/Users", Some(json!({"userName": 7})), 400).await, 400, Some("invalidValue"));
    scim_error(
        &idp.ok("POST", "/Users", Some(json!({"userName": "x", "active": "maybe"})), 400).await,
        400,
        Some("invalidValue"),
    );
    for filter in ["userName%20eq", "userName%20zz%20%22a%22", "((((", "userName%20eq%20%22a%22%20and"] {
        scim_error(&idp.ok("GET", &format!("/Users?filter={filter}"), None, 400).await, 400, Some("invalidFilter"));
    }
    scim_error(&idp.ok("GET", "/Users?count=many", None, 400).await, 400, Some("invalidValue"));
    scim_error(&idp.ok("POST", "/.search", Some(json!({"filter": 7})), 400).await, 400, Some("invalidValue"));
    scim_error(
        &idp.ok("POST", "/Users/.search", Some(json!({"filter": "userName eq"})), 400).await,
        400,
        Some("invalidFilter"),
    );
    scim_error(
        &idp.ok(
            "PATCH",
            &format!("/Users/{id}"),
            Some(json!({"Operations": [{"op": "replace", "value": {"displayName": "Z"}}]})),
            400,
        )
        .await,
        400,
        Some("invalidSyntax"),
    );
    let ops = |ops: Value| json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
    scim_error(
        &idp.ok(
            "PATCH",
            &format!("/Users/{id}"),
            Some(ops(json!([{"op": "replace", "path": "emails[type eq", "value": "x"}]))),
            400,
        )
        .await,
        400,
        Some("invalidPath"),
    );
    // The first operation is fine, the second is not: neither is applied.
    let half = ops(json!([
        {"op": "replace", "path": "displayName", "value": "Changed"},
        {"op": "replace", "path": "nosuchattribute", "value": "x"}
    ]));
    scim_error(&idp.ok("PATCH", &format!("/Users/{id}"), Some(half), 400).await, 400, Some("invalidPath"));
    let wrong_type = ops(json!([
        {"op": "replace", "path": "displayName", "value": "Changed"},
        {"op": "replace", "path": "active", "value": {"a": 1}}
    ]));
    scim_error(&idp.ok("PATCH", &format!("/Users/{id}"), Some(wrong_type), 400).await, 400, Some("invalidValue"));
    scim_error(
        &idp.ok("PATCH", &format!("/Users/{id}"), Some(ops(json!([{"op": "remove", "path": "userName"}]))), 400).await,
        400,
        Some("mutability"),
    );
    scim_error(
        &idp.ok(
            "PATCH",
            &format!("/Users/{id}"),
            Some(ops(json!([{"op": "replace", "path": "groups", "value": []}]))),
            400,
        )
        .await,
        400,
        Some("mutability"),
    );
    scim_error(
        &idp.ok("POST", "/Groups", Some(json!({"displayName": "G", "members": [{"value": "nobody"}]})), 400).await,
        400,
        Some("invalidValue"),
    );
    assert_eq!(s.get("/api/v1/groups").await.1, json!([]), "no group half made");
    assert_eq!(idp.ok("GET", &format!("/Users/{id}"), None, 200).await, before, "nothing changed");

    scim_error(&idp.ok("GET", "/Users/nobody", None, 404).await, 404, None);
    scim_error(&idp.ok("GET", "/NoSuchThing", None, 404).await, 404, None);
    // No token, or a token of another scope.
    let resp = s.client.get(format!("{}/scim/v2/Users", s.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = s.client.get(format!("{}/scim/v2/Users", s.base)).bearer_auth("nope").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // And the SCIM token opens nothing else.
    let resp = s.client.get(format!("{}/api/v1/people", s.base)).bearer_auth(&idp.token).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

crate::on_both_backends!(
    scim2_tester_passes,
    okta_assigns_changes_deactivates_and_removes,
    entra_assigns_changes_deactivates_and_removes,
    bad_input_gets_scim_errors_and_changes_nothing
);
