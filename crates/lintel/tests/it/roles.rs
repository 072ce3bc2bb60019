//! Operators' roles: every route of the operator API, asked with a token of every role,
//! answers 403 exactly when the role may not do what the route does (this file's own
//! table says what each route does; a new route fails here until it is placed). Making
//! someone an operator, and changing an operator, is an owner's business.

use serde_json::{Value, json};

use crate::harness::{Backend, Database, Server, lintel, small_world};

const ROLES: [&str; 6] = ["owner", "admin", "front_desk", "viewer", "display", "building"];

/// The roles allowed to do what a route does, by this test's reading of the issue:
/// reading for every role but the display, people, guests and doors for the front desk too,
/// everything else (configuration) for admins and owners.
fn allowed(method: &str, path: &str, security: &[String]) -> &'static [&'static str] {
    const READ: &[&str] = &["owner", "admin", "front_desk", "viewer"];
    const DESK: &[&str] = &["owner", "admin", "front_desk"];
    const CONFIGURE: &[&str] = &["owner", "admin"];
    let people = path.starts_with("/api/v1/people")
        || path.starts_with("/api/v1/credentials")
        || path.starts_with("/api/v1/guests")
        || path.contains("/members/")
        || path == "/api/v1/crm/cards";
    match method {
        // A building system raises an emergency release and reports inputs, nothing else.
        "post" if path == "/api/v1/sites/{id}/emergency" || path == "/api/v1/doors/{id}/inputs" => {
            &["owner", "admin", "building"]
        }
        // Acknowledging an alarm and forgiving someone in an anti-passback zone are the
        // front desk's too, like opening a door.
        "post" if path == "/api/v1/alarms/{id}/ack" || path == "/api/v1/zones/{id}/forgive" => DESK,
        // Routes open to users too answer operators that may configure (users' keys).
        _ if security.iter().any(|s| s == "user") => CONFIGURE,
        "get" => READ,
        "post" if path == "/api/v1/decisions" || path == "/api/v1/doors/{id}/open" => DESK,
        _ if people => DESK,
        _ => CONFIGURE,
    }
}

/// The path with its parameters filled in with ids that exist nowhere: an allowed role
/// gets a 404 or a 422, never a change.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').map_or(rest.len(), |e| start + e + 1);
        let name = &rest[start + 1..end - 1];
        out.push_str(if name == "delivery" { "999999" } else { "nobody-here" });
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

pub(crate) fn create_token(db: &Database, role: &str) -> String {
    create_token_at(db, role, None).expect("token create")
}

/// A token of `role`, limited to `site` when given: the token, or what the CLI said.
pub(crate) fn create_token_at(db: &Database, role: &str, site: Option<&str>) -> Result<String, String> {
    let name = format!("t-{role}{}", site.map(|s| format!("-{s}")).unwrap_or_default());
    let mut args = vec!["token", "create", "--name", &name, "--role", role, "--database-url", &db.url];
    if let Some(site) = site {
        args.extend(["--site", site]);
    }
    let out = lintel().args(&args).current_dir(&db.dir).output().expect("lintel token create runs");
    match out.status.success() {
        true => Ok(String::from_utf8(out.stdout).unwrap().trim().to_owned()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// The routes that keep a role limited to one site to it: people (shared by every site)
/// and what concerns a site's doors. The rest (sites' settings, integrations, webhooks,
/// tokens) reach every site.
fn keeps_to_a_site(method: &str, path: &str) -> bool {
    const UNDER: [&str; 14] = [
        "/api/v1/lockdown",
        "/api/v1/alarms",
        "/api/v1/people",
        "/api/v1/credentials",
        "/api/v1/enrolments",
        "/api/v1/doors",
        "/api/v1/groups",
        "/api/v1/grants",
        "/api/v1/guests",
        "/api/v1/events",
        "/api/v1/attendance",
        "/api/v1/audit",
        "/api/v1/decisions",
        "/api/v1/people.csv",
    ];
    // A door's lock admins (signed operations) are set by an operator of every site.
    let lock_admins = path.ends_with("/admins") || path.contains("/admins/");
    (UNDER.iter().any(|under| path.starts_with(under)) && !lock_admins)
        || (method == "get" && path.starts_with("/api/v1/sites"))
        || path == "/api/v1/sites/{id}/emergency"
}

async fn status(s: &Server, method: &str, path: &str, token: &str) -> u16 {
    let method: reqwest::Method = method.to_uppercase().parse().unwrap();
    let body = (method != reqwest::Method::GET && method != reqwest::Method::DELETE).then(|| json!({}));
    let mut request = s.client.request(method, format!("{}{path}", s.base)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    // Only the status: the event stream's body never ends.
    request.send().await.expect("the request").status().as_u16()
}

pub(crate) async fn tokens(db: &Database, s: &Server) -> Vec<(&'static str, String)> {
    let tokens: Vec<_> = ROLES.iter().map(|role| (*role, create_token(db, role))).collect();
    for (_, token) in &tokens {
        wait_for_token(s, token).await;
    }
    tokens
}

async fn every_route_refuses_exactly_the_roles_that_may_not(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    small_world(&s).await;
    let tokens = tokens(&db, &s).await;
    let doc = s.get("/openapi.json").await.1;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let security: Vec<String> = op["security"]
                .as_array()
                .map(|s| s.iter().flat_map(|r| r.as_object().unwrap().keys().cloned()).collect())
                .unwrap_or_default();
            if !security.iter().any(|s| s == "admin") {
                continue;
            }
            let allowed = allowed(method, path, &security);
            let url = concrete(path);
            for (role, token) in &tokens {
                let got = status(&s, method, &url, token).await;
                if allowed.contains(role) {
                    assert!(got != 401 && got != 403, "{role} may {method} {path}, got {got}");
                } else {
                    assert_eq!(got, 403, "{role} may not {method} {path}");
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 50, "only {checked} routes were checked");

    // An admin limited to one site: what keeps to it as an admin, the rest refused.
    s.ok("/api/v1/sites", json!({"id": "north", "name": "North"}), 201).await;
    let north = create_token_at(&db, "admin", Some("north")).expect("a site's admin");
    wait_for_token(&s, &north).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let admin = op["security"].as_array().is_some_and(|s| s.iter().any(|r| r.get("admin").is_some()));
            if !path.starts_with("/api/v1/") || !admin {
                continue;
            }
            let got = status(&s, method, &concrete(path), &north).await;
            let users = op["security"].as_array().is_some_and(|s| s.iter().any(|r| r.get("user").is_some()));
            if keeps_to_a_site(method, path) && !users {
                assert!(got != 401 && got != 403, "a site's admin may {method} {path}, got {got}");
            } else {
                assert_eq!(got, 403, "a site's admin may not {method} {path}");
            }
        }
    }
}

/// The server loads new tokens within a few seconds (an unknown one is a 401).
pub(crate) async fn wait_for_token(s: &Server, token: &str) {
    for _ in 0..100 {
        if status(s, "get", "/api/v1/sites", token).await != 401 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the new token was not accepted");
}

/// An admin limited to the site `north` sees and changes only north's doors, grants to
/// them and their events; the people are shared; sites and webhooks are not theirs.
async fn a_sites_admin_keeps_to_their_site(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    small_world(&s).await;
    s.ok("/api/v1/sites", json!({"id": "north", "name": "North"}), 201).await;
    let refused = create_token_at(&db, "owner", Some("north")).expect_err("an owner holds everywhere");
    assert!(refused.contains("every site"), "{refused}");
    assert!(create_token_at(&db, "admin", Some("nowhere")).is_err(), "an unknown site");
    let north = create_token_at(&db, "admin", Some("north")).unwrap();
    wait_for_token(&s, &north).await;
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let (s, north, path) = (&s, north.clone(), path.to_owned());
        async move { call_as(s, &north, method, &path, body).await }
    };
    use reqwest::Method;
    // A door they add is at their site; another site's is refused.
    let (status, door) = call(Method::POST, "/api/v1/doors", Some(json!({"id": "n1", "name": "North door"}))).await;
    assert_eq!((status, door["site"].as_str()), (201, Some("north")), "{door}");
    let elsewhere = json!({"id": "m2", "name": "Main door", "site": "main"});
    assert_eq!(call(Method::POST, "/api/v1/doors", Some(elsewhere)).await.0, 403);
    let (_, doors) = call(Method::GET, "/api/v1/doors", None).await;
    let ids: Vec<&str> = doors.as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["n1"], "only their site's doors");
    assert_eq!(call(Method::GET, "/api/v1/doors?site=main", None).await.0, 403);
    assert_eq!(call(Method::GET, "/api/v1/doors/front", None).await.0, 403);
    assert_eq!(call(Method::PATCH, "/api/v1/doors/front", Some(json!({"name": "X"}))).await.0, 403);
    assert_eq!(call(Method::PATCH, "/api/v1/doors/n1", Some(json!({"site": "main"}))).await.0, 403);
    assert_eq!(call(Method::DELETE, "/api/v1/doors/front", None).await.0, 403);
    assert_eq!(call(Method::POST, "/api/v1/doors/front/open", None).await.0, 403);
    assert_eq!(call(Method::POST, "/api/v1/doors/n1/open", None).await.0, 200);
    // People are shared; access is given only to their doors.
    let (status, alice) = call(Method::GET, "/api/v1/people/alice", None).await;
    assert_eq!((status, alice["id"].as_str()), (200, Some("alice")));
    let to_main = json!({"person_id": "alice", "doors": ["front"]});
    assert_eq!(call(Method::POST, "/api/v1/grants", Some(to_main)).await.0, 403);
    let (status, grant) =
        call(Method::POST, "/api/v1/grants", Some(json!({"person_id": "alice", "doors": ["n1"]}))).await;
    assert_eq!(status, 201, "{grant}");
    let grant_id = grant["id"].as_str().unwrap();
    let widen = json!({"doors": ["n1", "front"]});
    assert_eq!(call(Method::PATCH, &format!("/api/v1/grants/{grant_id}"), Some(widen)).await.0, 403);
    let main_grant = s.get("/api/v1/grants?person_id=alice").await.1;
    let main_grant = main_grant.as_array().unwrap().iter().find(|g| g["doors"] == json!(["front"])).unwrap().clone();
    let path = format!("/api/v1/grants/{}", main_grant["id"].as_str().unwrap());
    assert_eq!(call(Method::DELETE, &path, None).await.0, 403, "another site's grant stays");
    // A group whose doors reach another site: its members are not theirs to change.
    s.ok("/api/v1/groups", json!({"id": "everyone", "name": "Everyone", "doors": ["front", "n1"]}), 201).await;
    assert_eq!(call(Method::PUT, "/api/v1/groups/everyone/members/alice", None).await.0, 403);
    let (status, _) =
        call(Method::POST, "/api/v1/groups", Some(json!({"id": "north-staff", "name": "N", "doors": ["n1"]}))).await;
    assert_eq!(status, 201);
    assert_eq!(call(Method::PUT, "/api/v1/groups/north-staff/members/alice", None).await.0, 204);
    // The lists of groups and grants: those that concern their doors.
    s.ok("/api/v1/groups", json!({"id": "main-only", "name": "Main", "doors": ["front"]}), 201).await;
    let (_, groups) = call(Method::GET, "/api/v1/groups", None).await;
    let mut ids: Vec<&str> = groups.as_array().unwrap().iter().map(|g| g["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["everyone", "north-staff"], "{groups}");
    assert_eq!(call(Method::GET, "/api/v1/groups/main-only", None).await.0, 403);
    let (_, grants) = call(Method::GET, "/api/v1/grants", None).await;
    let grants: Vec<&str> = grants.as_array().unwrap().iter().map(|g| g["id"].as_str().unwrap()).collect();
    assert_eq!(grants, [grant_id], "only the grant to their door");
    assert_eq!(call(Method::GET, &path, None).await.0, 403, "another site's grant is not shown");
    let (_, all) = s.get("/api/v1/grants?site=north").await;
    assert_eq!(all.as_array().unwrap().len(), 1, "site= for an operator of every site: {all}");
    // A group's grant without doors opens the group's own: beyond their site, refused.
    assert_eq!(call(Method::POST, "/api/v1/grants", Some(json!({"group_id": "everyone"}))).await.0, 403);
    assert_eq!(call(Method::POST, "/api/v1/grants", Some(json!({"group_id": "north-staff"}))).await.0, 201);
    // The lockdown exemption holds at every site: not theirs to give.
    let exempt = json!({"attributes": {"lockdown_exempt": true}});
    assert_eq!(call(Method::PATCH, "/api/v1/people/alice", Some(exempt)).await.0, 403);
    // A door of theirs may not drive another site's device.
    let relay = |id: &str, url: &str| json!({"id": id, "name": id, "driver": {"kind": "shelly", "url": url, "generation": 2, "channel": 0}});
    s.ok("/api/v1/doors", relay("main-relay", "http://192.0.2.10"), 201).await;
    assert_eq!(call(Method::POST, "/api/v1/doors", Some(relay("n-relay", "http://192.0.2.10/"))).await.0, 403);
    assert_eq!(call(Method::POST, "/api/v1/doors", Some(relay("n-relay", "http://192.0.2.11"))).await.0, 201);
    let steal = json!({"driver": {"kind": "shelly", "url": "http://192.0.2.10", "generation": 2, "channel": 0}});
    assert_eq!(call(Method::PATCH, "/api/v1/doors/n-relay", Some(steal)).await.0, 403);
    // Guest passes: those to their doors only.
    let until = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let pass = json!({"name": "Visitor", "doors": ["front"], "valid_until": until});
    let (status, pass) = s.post("/api/v1/guests", pass).await;
    assert_eq!(status, 201, "{pass}");
    let pass_path = format!("/api/v1/guests/{}", pass["id"].as_str().unwrap());
    let (_, passes) = call(Method::GET, "/api/v1/guests", None).await;
    assert!(passes.as_array().unwrap().iter().all(|p| p["id"] != pass["id"]), "{passes}");
    assert_eq!(call(Method::GET, &pass_path, None).await.0, 403);
    assert_eq!(s.get(&pass_path).await.0, 200);
    // Decisions: only at their doors.
    let card = json!({"kind": "card", "uid": "04A1B2C3", "revocation_code": "7"});
    let ask = |door: &str| json!({"door": door, "credential": card.clone()});
    assert_eq!(call(Method::POST, "/api/v1/decisions", Some(ask("front"))).await.0, 403);
    let (status, decision) = call(Method::POST, "/api/v1/decisions", Some(ask("n1"))).await;
    assert_eq!((status, decision["allowed"].as_bool()), (200, Some(true)), "{decision}");
    // Events, the audit trail and sites: theirs only.
    let (_, events) = call(Method::GET, "/api/v1/events?limit=1000", None).await;
    let events = events["items"].as_array().unwrap();
    assert!(events.iter().any(|e| e["door"] == "n1"), "their door's events");
    let theirs = |e: &&Value| e["door"] == "n1" || e["door"] == "n-relay";
    assert!(events.iter().all(|e| theirs(&e)), "nothing of another site: {events:?}");
    assert_eq!(call(Method::GET, "/api/v1/events?site=main", None).await.0, 403);
    let (_, sites) = call(Method::GET, "/api/v1/sites", None).await;
    assert_eq!(sites.as_array().unwrap().len(), 1, "{sites}");
    assert_eq!(call(Method::GET, "/api/v1/sites/main", None).await.0, 403);
    assert_eq!(call(Method::PATCH, "/api/v1/sites/north", Some(json!({"name": "N"}))).await.0, 403);
    assert_eq!(call(Method::GET, "/api/v1/webhooks", None).await.0, 403);
    // The site stays while a token is limited to it.
    assert_eq!(s.patch("/api/v1/doors/n1", json!({"site": "main"})).await.0, 200);
    assert_eq!(s.delete("/api/v1/sites/north").await.0, 409);
    let listed = lintel().args(["token", "list", "--database-url", &db.url]).current_dir(&db.dir).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.lines().any(|l| l.starts_with("t-admin-north\t") && l.ends_with("\tadmin@north")), "{listed}");
}

/// A call with `token`: its status and its answer.
pub(crate) async fn call_as(
    s: &Server,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let request = s.client.request(method, format!("{}{path}", s.base)).bearer_auth(token);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json::<Value>().await.unwrap_or(Value::Null))
}

async fn operators_are_made_and_changed_by_owners_only(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    small_world(&s).await;
    let tokens = tokens(&db, &s).await;
    let token = |role: &str| tokens.iter().find(|(r, _)| *r == role).unwrap().1.clone();
    let call = |role: &str, method: reqwest::Method, path: &str, body: Option<Value>| {
        let (s, token, path) = (&s, token(role), path.to_owned());
        async move { call_as(s, &token, method, &path, body).await }
    };
    let make_operator = json!({"attributes": {"ui_operator": "front_desk"}});
    for role in ["admin", "front_desk"] {
        let (status, problem) =
            call(role, reqwest::Method::PATCH, "/api/v1/people/alice", Some(make_operator.clone())).await;
        assert_eq!(status, 403, "{role}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains("manage tokens or operators' roles"), "{problem}");
        let new = json!({"id": format!("op-{role}"), "name": "Op", "attributes": {"ui_operator": true}});
        assert_eq!(call(role, reqwest::Method::POST, "/api/v1/people", Some(new)).await.0, 403, "{role}");
    }
    assert_eq!(s.get("/api/v1/people/alice").await.1["attributes"].get("ui_operator"), None, "nothing changed");
    let (status, alice) = call("owner", reqwest::Method::PATCH, "/api/v1/people/alice", Some(make_operator)).await;
    assert_eq!((status, &alice["attributes"]["ui_operator"]), (200, &json!("front_desk")), "{alice}");
    // Alice is an operator now: changing or removing her is the owner's too.
    let rename = json!({"name": "Alice B."});
    assert_eq!(call("admin", reqwest::Method::PATCH, "/api/v1/people/alice", Some(rename.clone())).await.0, 403);
    assert_eq!(call("front_desk", reqwest::Method::DELETE, "/api/v1/people/alice", None).await.0, 403);
    assert_eq!(call("owner", reqwest::Method::PATCH, "/api/v1/people/alice", Some(rename)).await.0, 200);
    // Anyone else the front desk changes as before.
    let bob = json!({"id": "bob", "name": "Bob"});
    assert_eq!(call("front_desk", reqwest::Method::POST, "/api/v1/people", Some(bob)).await.0, 201);
    assert_eq!(call("front_desk", reqwest::Method::DELETE, "/api/v1/people/bob", None).await.0, 204);
    // The list names each token's role.
    let listed = lintel().args(["token", "list", "--database-url", &db.url]).current_dir(&db.dir).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.lines().any(|l| l.starts_with("t-front_desk\t") && l.ends_with("\tfront_desk")), "{listed}");
}

crate::on_both_backends!(
    every_route_refuses_exactly_the_roles_that_may_not,
    operators_are_made_and_changed_by_owners_only,
    a_sites_admin_keeps_to_their_site
);
