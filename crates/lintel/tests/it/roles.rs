//! Operators' roles: every route of the operator API, asked with a token of every role,
//! answers 403 exactly when the role may not do what the route does (this file's own
//! table says what each route does; a new route fails here until it is placed). Making
//! someone an operator, and changing an operator, is an owner's business.

use serde_json::{Value, json};

use crate::harness::{Backend, Database, Server, lintel, small_world};

const ROLES: [&str; 5] = ["owner", "admin", "front_desk", "viewer", "display"];

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
    let out = lintel()
        .args(["token", "create", "--name", &format!("t-{role}"), "--role", role, "--database-url", &db.url])
        .current_dir(&db.dir)
        .output()
        .expect("lintel token create runs");
    assert!(out.status.success(), "token create: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
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
    // The server loads new tokens within a few seconds (unknown ones are a 401).
    for _ in 0..100 {
        let mut known = 0;
        for (_, token) in &tokens {
            known += usize::from(status(s, "get", "/api/v1/sites", token).await != 401);
        }
        if known == tokens.len() {
            return tokens;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the new tokens were not accepted");
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
}

async fn operators_are_made_and_changed_by_owners_only(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    small_world(&s).await;
    let tokens = tokens(&db, &s).await;
    let token = |role: &str| tokens.iter().find(|(r, _)| *r == role).unwrap().1.clone();
    let call = |role: &str, method: reqwest::Method, path: &str, body: Option<Value>| {
        let request = s.client.request(method, format!("{}{path}", s.base)).bearer_auth(token(role));
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
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
    operators_are_made_and_changed_by_owners_only
);
