//! Bad input everywhere: every answer is a 4xx problem document (`application/problem+json`
//! with `type`, `title`, `status`, `detail`), and the store is exactly as it was.

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::harness::{ADMIN, Backend, Database, Server};

/// An answer as it came: status, headers and the body (JSON when it parses).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Answer {
    pub fn content_type(&self) -> &str {
        self.headers.get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }
}

pub async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer { status, headers, text, body }
}

/// What is wrong with an answer that should be a problem document with this status
/// (0: any 4xx).
pub fn problem_mismatch(a: &Answer, status: u16) -> Option<String> {
    let mut wrong = Vec::new();
    if status == 0 && !(400..500).contains(&a.status) {
        wrong.push(format!("status {} instead of a 4xx", a.status));
    } else if status != 0 && a.status != status {
        wrong.push(format!("status {} instead of {status}", a.status));
    }
    if a.status >= 500 && status < 500 {
        wrong.push("a 5xx for bad input".to_owned());
    }
    if !a.content_type().starts_with("application/problem+json") {
        wrong.push(format!("content type {:?}", a.content_type()));
    }
    for field in ["type", "title", "detail"] {
        if a.body[field].as_str().is_none_or(str::is_empty) {
            wrong.push(format!("no {field}"));
        }
    }
    if a.body["status"] != a.status {
        wrong.push(format!("body status {} for HTTP {}", a.body["status"], a.status));
    }
    if a.status == 401 && a.headers.get(reqwest::header::WWW_AUTHENTICATE).is_none() {
        wrong.push("401 without WWW-Authenticate".to_owned());
    }
    (!wrong.is_empty())
        .then(|| format!("{}; body {:?}", wrong.join(", "), a.text.chars().take(300).collect::<String>()))
}

pub fn assert_problem(a: &Answer, status: u16, what: &str) {
    if let Some(wrong) = problem_mismatch(a, status) {
        panic!("{what}: {wrong}");
    }
}

#[derive(Clone)]
enum Body {
    None,
    Json(Value),
    /// Raw bytes with this content type (none when `None`).
    Raw(Option<&'static str>, Vec<u8>),
}

#[derive(Clone, Copy)]
enum Auth {
    Admin,
    Nobody,
    Token(&'static str),
    Basic,
}

struct Case {
    what: String,
    method: Method,
    path: String,
    body: Body,
    auth: Auth,
    status: u16,
}

fn case(what: &str, method: Method, path: &str, body: Body, status: u16) -> Case {
    Case { what: what.to_owned(), method, path: path.to_owned(), body, auth: Auth::Admin, status }
}

fn post(what: &str, path: &str, body: Value, status: u16) -> Case {
    case(what, Method::POST, path, Body::Json(body), status)
}

fn patch(what: &str, path: &str, body: Value, status: u16) -> Case {
    case(what, Method::PATCH, path, Body::Json(body), status)
}

fn raw(what: &str, method: Method, path: &str, content_type: Option<&'static str>, bytes: &[u8], status: u16) -> Case {
    case(what, method, path, Body::Raw(content_type, bytes.to_vec()), status)
}

fn get(what: &str, path: &str, status: u16) -> Case {
    case(what, Method::GET, path, Body::None, status)
}

fn delete(what: &str, path: &str, status: u16) -> Case {
    case(what, Method::DELETE, path, Body::None, status)
}

fn with_auth(mut c: Case, auth: Auth) -> Case {
    c.auth = auth;
    c
}

async fn run(s: &Server, c: &Case) -> Answer {
    let mut request = s.client.request(c.method.clone(), format!("{}{}", s.base, c.path));
    request = match c.auth {
        Auth::Admin => request.bearer_auth(ADMIN),
        Auth::Nobody => request,
        Auth::Token(t) => request.bearer_auth(t),
        Auth::Basic => request.basic_auth("admin", Some(ADMIN)),
    };
    request = match &c.body {
        Body::None => request,
        Body::Json(v) => request.json(v),
        Body::Raw(Some(ct), bytes) => request.header(reqwest::header::CONTENT_TYPE, *ct).body(bytes.clone()),
        Body::Raw(None, bytes) => request.body(bytes.clone()),
    };
    send(request).await
}

/// Runs every case and fails with the list of those that went wrong.
async fn run_all(s: &Server, cases: &[Case]) {
    let mut failures = Vec::new();
    for c in cases {
        let answer = run(s, c).await;
        if let Some(wrong) = problem_mismatch(&answer, c.status) {
            failures.push(format!("{} {} ({}): {wrong}", c.method, c.path, c.what));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases went wrong:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// Everything a client can read back, and how many events there are.
pub async fn snapshot(s: &Server) -> Value {
    let mut all = serde_json::Map::new();
    for path in [
        "/api/v1/people?limit=500",
        "/api/v1/doors",
        "/api/v1/groups",
        "/api/v1/grants",
        "/api/v1/people/alice/credentials",
        "/api/v1/people/bob/credentials",
        "/readyz",
    ] {
        let (status, body) = s.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        all.insert(path.to_owned(), body);
    }
    all.insert("events".into(), s.events().await.len().into());
    Value::Object(all)
}

/// A door, two people (alice with a card, a PIN and a grant), a group.
async fn world(s: &Server) {
    s.ok("/api/v1/doors", json!({"id": "front", "name": "Front"}), 201).await;
    s.ok("/api/v1/doors", json!({"id": "side", "name": "Side"}), 201).await;
    s.ok("/api/v1/people", json!({"id": "alice", "name": "Alice", "external_ids": {"crm": "A-1"}}), 201).await;
    s.ok("/api/v1/people", json!({"id": "bob", "name": "Bob", "external_ids": {"crm": "B-2"}}), 201).await;
    s.ok("/api/v1/people/alice/credentials", json!({"kind": "card", "uid": "04A1B2C3", "revocation_code": "7"}), 201)
        .await;
    s.ok("/api/v1/people/alice/credentials", json!({"kind": "pin", "pin": "4711"}), 201).await;
    s.ok("/api/v1/groups", json!({"id": "staff", "name": "Staff", "doors": ["front"]}), 201).await;
    assert_eq!(s.put("/api/v1/groups/staff/members/alice").await.0, 204);
    s.ok("/api/v1/grants", json!({"person_id": "alice", "doors": ["front"]}), 201).await;
}

fn directory_cases() -> Vec<Case> {
    let people = "/api/v1/people";
    let json_ct = Some("application/json");
    let big_name = "x".repeat(70 * 1024);
    let deep = format!("{{\"name\":\"x\",\"attributes\":{{\"a\":{}{}}}}}", "[".repeat(5000), "]".repeat(5000));
    vec![
        // Syntax, size and type of the body.
        raw("truncated JSON", Method::POST, people, json_ct, br#"{"name": "x""#, 400),
        raw("not JSON at all", Method::POST, people, json_ct, b"name=x", 400),
        raw("empty body", Method::POST, people, json_ct, b"", 400),
        raw("trailing garbage", Method::POST, people, json_ct, br#"{"name": "x"} {"#, 400),
        raw("invalid UTF-8", Method::POST, people, json_ct, b"{\"name\": \"\xff\xfe\"}", 400),
        raw("nesting beyond reason", Method::POST, people, json_ct, deep.as_bytes(), 400),
        raw("text/plain", Method::POST, people, Some("text/plain"), br#"{"name": "x"}"#, 415),
        raw("form", Method::POST, people, Some("application/x-www-form-urlencoded"), b"name=x", 415),
        raw("no content type", Method::POST, people, None, br#"{"name": "x"}"#, 415),
        raw("over 64 KiB", Method::POST, people, json_ct, json!({"name": big_name}).to_string().as_bytes(), 413),
        // Shape of people.
        post("unknown field", people, json!({"name": "x", "nickname": "y"}), 422),
        post("name of the wrong type", people, json!({"name": 5}), 422),
        post("no name", people, json!({"email": "x@example.org"}), 422),
        post("an array", people, json!([{"name": "x"}]), 422),
        post("null", people, json!(null), 422),
        post("status unknown", people, json!({"name": "x", "status": "gone"}), 422),
        post("skills not a list", people, json!({"name": "x", "skills": "laser"}), 422),
        post("id starts with a dash", people, json!({"id": "-x", "name": "x"}), 422),
        post("id with a space", people, json!({"id": "a b", "name": "x"}), 422),
        post("id with a slash", people, json!({"id": "a/b", "name": "x"}), 422),
        post("empty id", people, json!({"id": "", "name": "x"}), 422),
        post("id too long", people, json!({"id": "a".repeat(129), "name": "x"}), 422),
        post("empty name", people, json!({"name": "  "}), 422),
        post("name with a control character", people, json!({"name": "a\u{0}b"}), 422),
        post("name too long", people, json!({"name": "n".repeat(201)}), 422),
        post("email without @", people, json!({"name": "x", "email": "nobody"}), 422),
        post("phone with letters", people, json!({"name": "x", "phone": "call me"}), 422),
        post("too many skills", people, json!({"name": "x", "skills": vec!["s"; 101]}), 422),
        post("attributes over 16 KiB", people, json!({"name": "x", "attributes": {"a": "b".repeat(17 * 1024)}}), 422),
        post("attributes not an object", people, json!({"name": "x", "attributes": [1]}), 422),
        post("bad external id system", people, json!({"name": "x", "external_ids": {"a b": "1"}}), 422),
        post("duplicate id", people, json!({"id": "alice", "name": "Alice again"}), 409),
        post("external id taken", people, json!({"id": "carol", "name": "Carol", "external_ids": {"crm": "A-1"}}), 409),
        patch("patch: unknown field", "/api/v1/people/alice", json!({"nick": "al"}), 422),
        patch("patch: bad email", "/api/v1/people/alice", json!({"email": "no"}), 422),
        patch("patch: bad status", "/api/v1/people/alice", json!({"status": "deleted"}), 422),
        patch("patch: empty name", "/api/v1/people/alice", json!({"name": ""}), 422),
        patch("patch: nobody", "/api/v1/people/nobody", json!({"name": "X"}), 404),
        patch(
            "patch: external id taken (with a name change)",
            "/api/v1/people/alice",
            json!({"name": "Changed", "external_ids": {"crm": "B-2"}}),
            409,
        ),
        raw("patch: malformed", Method::PATCH, "/api/v1/people/alice", json_ct, b"{", 400),
        raw("patch: text/plain", Method::PATCH, "/api/v1/people/alice", Some("text/plain"), b"{}", 415),
        get("unknown person", "/api/v1/people/nobody", 404),
        delete("unknown person", "/api/v1/people/nobody", 404),
        get("bad cursor", "/api/v1/people?after=xyz", 400),
        get("bad limit", "/api/v1/people?limit=ten", 400),
        get("external id without system", "/api/v1/people?external_id=A-1", 400),
        get("unknown parameter", "/api/v1/people?sort=name", 400),
        // Credentials.
        post("card uid not hex", "/api/v1/people/alice/credentials", json!({"kind": "card", "uid": "XYZW"}), 422),
        post("card uid odd length", "/api/v1/people/alice/credentials", json!({"kind": "card", "uid": "123"}), 422),
        post("card uid empty", "/api/v1/people/alice/credentials", json!({"kind": "card", "uid": ""}), 422),
        post(
            "card uid too long",
            "/api/v1/people/alice/credentials",
            json!({"kind": "card", "uid": "AB".repeat(33)}),
            422,
        ),
        post("card uid a number", "/api/v1/people/alice/credentials", json!({"kind": "card", "uid": 1234}), 422),
        post("card without uid", "/api/v1/people/alice/credentials", json!({"kind": "card"}), 422),
        post(
            "empty revocation code",
            "/api/v1/people/alice/credentials",
            json!({"kind": "card", "uid": "0A0B0C0D", "revocation_code": ""}),
            422,
        ),
        post("PIN too short", "/api/v1/people/alice/credentials", json!({"kind": "pin", "pin": "123"}), 422),
        post("PIN too long", "/api/v1/people/alice/credentials", json!({"kind": "pin", "pin": "1234567890123"}), 422),
        post("PIN with letters", "/api/v1/people/alice/credentials", json!({"kind": "pin", "pin": "12a4"}), 422),
        post("PIN a number", "/api/v1/people/alice/credentials", json!({"kind": "pin", "pin": 4711}), 422),
        post("unknown kind", "/api/v1/people/alice/credentials", json!({"kind": "retina"}), 422),
        post("no kind", "/api/v1/people/alice/credentials", json!({"uid": "0A0B0C0D"}), 422),
        post(
            "card extra field",
            "/api/v1/people/alice/credentials",
            json!({"kind": "card", "uid": "0A0B0C0D", "pin": "1"}),
            422,
        ),
        post(
            "credential for nobody",
            "/api/v1/people/nobody/credentials",
            json!({"kind": "card", "uid": "0A0B0C0D"}),
            404,
        ),
        post(
            "card of another person",
            "/api/v1/people/bob/credentials",
            json!({"kind": "card", "uid": "04:a1:b2:c3"}),
            409,
        ),
        get("credentials of nobody", "/api/v1/people/nobody/credentials", 404),
        get("unknown credential", "/api/v1/credentials/c-999999", 404),
        get("malformed credential id", "/api/v1/credentials/card-1", 404),
        get("credential id 0", "/api/v1/credentials/c-0", 404),
        get("credential id overflow", "/api/v1/credentials/c-99999999999999999999999", 404),
        delete("revoke unknown credential", "/api/v1/credentials/c-999999", 404),
        delete("revoke malformed credential id", "/api/v1/credentials/xyz", 404),
        // Doors.
        post("duplicate door", "/api/v1/doors", json!({"id": "front", "name": "Again"}), 409),
        post("door id with a space", "/api/v1/doors", json!({"id": "a b", "name": "X"}), 422),
        post("door without name", "/api/v1/doors", json!({"id": "d2"}), 422),
        post("open_seconds 0", "/api/v1/doors", json!({"id": "d2", "name": "D", "open_seconds": 0}), 422),
        post("open_seconds 3601", "/api/v1/doors", json!({"id": "d2", "name": "D", "open_seconds": 3601}), 422),
        post("open_seconds negative", "/api/v1/doors", json!({"id": "d2", "name": "D", "open_seconds": -1}), 422),
        post("open_seconds text", "/api/v1/doors", json!({"id": "d2", "name": "D", "open_seconds": "5"}), 422),
        post(
            "open_seconds huge",
            "/api/v1/doors",
            json!({"id": "d2", "name": "D", "open_seconds": 4294967296u64}),
            422,
        ),
        post("fail_mode unknown", "/api/v1/doors", json!({"id": "d2", "name": "D", "fail_mode": "open"}), 422),
        post("driver unknown", "/api/v1/doors", json!({"id": "d2", "name": "D", "driver": {"kind": "zigbee"}}), 422),
        post(
            "shelly ftp URL",
            "/api/v1/doors",
            json!({"id": "d2", "name": "D", "driver": {"kind": "shelly", "url": "ftp://192.0.2.1"}}),
            422,
        ),
        post(
            "shelly URL not a URL",
            "/api/v1/doors",
            json!({"id": "d2", "name": "D", "driver": {"kind": "shelly", "url": "relay in the hall"}}),
            422,
        ),
        post(
            "shelly generation 3",
            "/api/v1/doors",
            json!({"id": "d2", "name": "D", "driver": {"kind": "shelly", "url": "http://192.0.2.1", "generation": 3}}),
            422,
        ),
        post(
            "shelly channel 256",
            "/api/v1/doors",
            json!({"id": "d2", "name": "D", "driver": {"kind": "shelly", "url": "http://192.0.2.1", "channel": 256}}),
            422,
        ),
        post(
            "shelly without url",
            "/api/v1/doors",
            json!({"id": "d2", "name": "D", "driver": {"kind": "shelly"}}),
            422,
        ),
        post(
            "shelly unknown field",
            "/api/v1/doors",
            json!({"id": "d2", "name": "D", "driver": {"kind": "shelly", "url": "http://192.0.2.1", "relay": 1}}),
            422,
        ),
        post(
            "http bad method",
            "/api/v1/doors",
            json!({"id": "d2", "name": "D", "driver": {"kind": "http", "url": "http://192.0.2.1", "method": "UN LOCK"}}),
            422,
        ),
        post(
            "http bad header name",
            "/api/v1/doors",
            json!({"id": "d2", "name": "D", "driver": {"kind": "http", "url": "http://192.0.2.1", "headers": {"X Key": "1"}}}),
            422,
        ),
        post(
            "http bad header value",
            "/api/v1/doors",
            json!({"id": "d2", "name": "D", "driver": {"kind": "http", "url": "http://192.0.2.1", "headers": {"X-Key": "a\nb"}}}),
            422,
        ),
        patch("patch unknown door", "/api/v1/doors/nope", json!({"name": "X"}), 404),
        patch("patch open_seconds 0", "/api/v1/doors/front", json!({"open_seconds": 0}), 422),
        patch(
            "patch bad driver",
            "/api/v1/doors/front",
            json!({"driver": {"kind": "http", "url": "file:///etc/passwd"}}),
            422,
        ),
        patch("patch unknown field", "/api/v1/doors/front", json!({"colour": "red"}), 422),
        get("unknown door", "/api/v1/doors/nope", 404),
        delete("delete unknown door", "/api/v1/doors/nope", 404),
        post("open unknown door", "/api/v1/doors/nope/open", json!({}), 404),
        post("open 0 seconds", "/api/v1/doors/front/open", json!({"seconds": 0}), 422),
        post("open 3601 seconds", "/api/v1/doors/front/open", json!({"seconds": 3601}), 422),
        post("open with an empty note", "/api/v1/doors/front/open", json!({"note": " "}), 422),
        post("open with an unknown field", "/api/v1/doors/front/open", json!({"reason": "x"}), 422),
        raw("open with malformed JSON", Method::POST, "/api/v1/doors/front/open", json_ct, b"{\"seconds\":", 400),
        // Groups and memberships.
        post(
            "group with unknown door",
            "/api/v1/groups",
            json!({"id": "g2", "name": "G", "doors": ["front", "nope"]}),
            404,
        ),
        post("group id invalid", "/api/v1/groups", json!({"id": "g 2", "name": "G"}), 422),
        post("group without name", "/api/v1/groups", json!({"id": "g2"}), 422),
        post("group door id invalid", "/api/v1/groups", json!({"id": "g2", "name": "G", "doors": ["no pe"]}), 422),
        post("duplicate group", "/api/v1/groups", json!({"id": "staff", "name": "Staff"}), 409),
        case("member of unknown group", Method::PUT, "/api/v1/groups/nope/members/alice", Body::None, 404),
        case("unknown member", Method::PUT, "/api/v1/groups/staff/members/nobody", Body::None, 404),
        delete("remove unknown member", "/api/v1/groups/staff/members/nobody", 404),
        get("unknown group", "/api/v1/groups/nope", 404),
        delete("delete unknown group", "/api/v1/groups/nope", 404),
        // Grants.
        post("grant for nobody and no group", "/api/v1/grants", json!({"doors": ["front"]}), 422),
        post(
            "grant for a person and a group",
            "/api/v1/grants",
            json!({"person_id": "bob", "group_id": "staff", "doors": ["front"]}),
            422,
        ),
        post("person grant without doors", "/api/v1/grants", json!({"person_id": "bob"}), 422),
        post("grant with no doors", "/api/v1/grants", json!({"person_id": "bob", "doors": []}), 422),
        post(
            "grant with doors and door_group",
            "/api/v1/grants",
            json!({"person_id": "bob", "doors": ["front"], "door_group": "staff"}),
            422,
        ),
        post("grant for unknown person", "/api/v1/grants", json!({"person_id": "nobody", "doors": ["front"]}), 404),
        post("grant for unknown group", "/api/v1/grants", json!({"group_id": "nope"}), 404),
        post(
            "grant with one unknown door",
            "/api/v1/grants",
            json!({"person_id": "bob", "doors": ["front", "nope"]}),
            404,
        ),
        post("grant with unknown door group", "/api/v1/grants", json!({"person_id": "bob", "door_group": "nope"}), 404),
        post(
            "schedule with unknown time zone",
            "/api/v1/grants",
            json!({"person_id": "bob", "doors": ["front"], "schedule": {"tz": "Mars/Olympus", "rules": []}}),
            422,
        ),
        post(
            "schedule from 25:00",
            "/api/v1/grants",
            json!({"person_id": "bob", "doors": ["front"], "schedule": {"tz": "UTC", "rules": [{"weekdays": ["mon"], "from": "25:00", "to": "26:00"}]}}),
            422,
        ),
        post(
            "schedule from 8 o'clock",
            "/api/v1/grants",
            json!({"person_id": "bob", "doors": ["front"], "schedule": {"tz": "UTC", "rules": [{"weekdays": ["mon"], "from": "8", "to": "20:00"}]}}),
            422,
        ),
        post(
            "schedule on funday",
            "/api/v1/grants",
            json!({"person_id": "bob", "doors": ["front"], "schedule": {"tz": "UTC", "rules": [{"weekdays": ["funday"], "from": "08:00", "to": "20:00"}]}}),
            422,
        ),
        post(
            "schedule rule with an unknown field",
            "/api/v1/grants",
            json!({"person_id": "bob", "doors": ["front"], "schedule": {"tz": "UTC", "rules": [{"weekdays": ["mon"], "from": "08:00", "to": "20:00", "every": 2}]}}),
            422,
        ),
        post(
            "schedule without rules",
            "/api/v1/grants",
            json!({"person_id": "bob", "doors": ["front"], "schedule": {"tz": "UTC"}}),
            422,
        ),
        post(
            "valid_from after valid_until",
            "/api/v1/grants",
            json!({"person_id": "bob", "doors": ["front"], "valid_from": "2027-01-01T00:00:00Z", "valid_until": "2026-01-01T00:00:00Z"}),
            422,
        ),
        post(
            "valid_from not a time",
            "/api/v1/grants",
            json!({"person_id": "bob", "doors": ["front"], "valid_from": "tomorrow"}),
            422,
        ),
        post("negative passes", "/api/v1/grants", json!({"person_id": "bob", "doors": ["front"], "passes": -1}), 422),
        post("empty source", "/api/v1/grants", json!({"person_id": "bob", "doors": ["front"], "source": ""}), 422),
        get("grants of nobody", "/api/v1/grants?person_id=nobody", 404),
        get("grants with unknown parameter", "/api/v1/grants?group_id=staff", 400),
        get("unknown grant", "/api/v1/grants/g-999999", 404),
        get("malformed grant id", "/api/v1/grants/grant-1", 404),
        delete("delete unknown grant", "/api/v1/grants/g-999999", 404),
        delete("delete malformed grant id", "/api/v1/grants/g-x", 404),
    ]
}

fn decision_and_event_cases() -> Vec<Case> {
    let decide = "/api/v1/decisions";
    let card = |uid: Value| json!({"door": "front", "credential": {"kind": "card", "uid": uid}});
    vec![
        post("card uid not hex", decide, card(json!("NOTHEX")), 422),
        post("card uid empty", decide, card(json!("")), 422),
        post("card uid a number", decide, card(json!(4711)), 422),
        post("PIN too short", decide, json!({"door": "front", "credential": {"kind": "pin", "pin": "1"}}), 422),
        post("PIN with letters", decide, json!({"door": "front", "credential": {"kind": "pin", "pin": "47a1"}}), 422),
        post("unknown credential kind", decide, json!({"door": "front", "credential": {"kind": "face"}}), 422),
        post("secret without secret", decide, json!({"door": "front", "credential": {"kind": "secret"}}), 422),
        post("no credential", decide, json!({"door": "front"}), 422),
        post("no door", decide, json!({"credential": {"kind": "card", "uid": "04A1B2C3"}}), 422),
        post("door a number", decide, json!({"door": 1, "credential": {"kind": "card", "uid": "04A1B2C3"}}), 422),
        post(
            "at not a time",
            decide,
            json!({"door": "front", "credential": {"kind": "card", "uid": "04A1B2C3"}, "at": "noon"}),
            422,
        ),
        post(
            "dry_run a string",
            decide,
            json!({"door": "front", "credential": {"kind": "card", "uid": "04A1B2C3"}, "dry_run": "yes"}),
            422,
        ),
        post(
            "unknown field",
            decide,
            json!({"door": "front", "credential": {"kind": "card", "uid": "04A1B2C3"}, "reader": "r1"}),
            422,
        ),
        post(
            "unknown credential field",
            decide,
            json!({"door": "front", "credential": {"kind": "card", "uid": "04A1B2C3", "pin": "4711"}}),
            422,
        ),
        raw("malformed", Method::POST, decide, Some("application/json"), b"{\"door\": ", 400),
        raw("text/plain", Method::POST, decide, Some("text/plain"), b"{}", 415),
        get("events: bad cursor", "/api/v1/events?after=latest", 400),
        get("events: bad limit", "/api/v1/events?limit=all", 400),
        get("events: unknown parameter", "/api/v1/events?before=10", 400),
        get("stream: unknown parameter", "/api/v1/events/stream?since=10", 400),
        get("stream: bad cursor", "/api/v1/events/stream?after=x", 400),
        get("attendance: no dates", "/api/v1/attendance", 400),
        get("attendance: bad date", "/api/v1/attendance?from=2026-02-30&to=2026-03-01", 400),
        get("attendance: to before from", "/api/v1/attendance?from=2026-03-02&to=2026-03-01", 422),
        get("attendance: over 366 days", "/api/v1/attendance?from=2025-01-01&to=2026-01-03", 422),
        get("attendance: unknown time zone", "/api/v1/attendance?from=2026-03-01&to=2026-03-02&tz=Mars/Olympus", 422),
        get("attendance: unknown split", "/api/v1/attendance?from=2026-03-01&to=2026-03-02&by=door", 422),
    ]
}

fn auth_and_route_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // Every admin route refuses a missing, wrong or wrongly presented token.
    let routes: [(Method, &str); 14] = [
        (Method::GET, "/api/v1/people"),
        (Method::POST, "/api/v1/people"),
        (Method::GET, "/api/v1/people/alice"),
        (Method::DELETE, "/api/v1/people/alice"),
        (Method::POST, "/api/v1/people/alice/credentials"),
        (Method::DELETE, "/api/v1/credentials/c-1"),
        (Method::POST, "/api/v1/doors"),
        (Method::POST, "/api/v1/doors/front/open"),
        (Method::PUT, "/api/v1/groups/staff/members/bob"),
        (Method::POST, "/api/v1/grants"),
        (Method::POST, "/api/v1/decisions"),
        (Method::GET, "/api/v1/events"),
        (Method::GET, "/api/v1/events/stream"),
        (Method::GET, "/api/v1/attendance?from=2026-03-01&to=2026-03-02"),
    ];
    for (method, path) in routes {
        let body = if method == Method::POST {
            Body::Json(json!({"door": "front", "credential": {"kind": "card", "uid": "04A1B2C3"}, "name": "x"}))
        } else {
            Body::None
        };
        let c = |what: &str, auth| with_auth(case(what, method.clone(), path, body.clone(), 401), auth);
        cases.push(c("no token", Auth::Nobody));
        cases.push(c("wrong token", Auth::Token("it-admin-token-0123456789abcdef0123456789abcdeX")));
        cases.push(c("token with a space", Auth::Token("it-admin-token x")));
        cases.push(c("basic auth with the admin token", Auth::Basic));
    }
    // A personal secret is not an admin token, nor the other way round.
    cases.push(with_auth(get("personal secret as admin token", "/api/v1/people", 401), Auth::Token("lsk_abc")));
    cases.push(with_auth(post("no secret", "/open/front", json!({}), 401), Auth::Nobody));
    cases.push(with_auth(case("empty bearer", Method::POST, "/open/front", Body::None, 401), Auth::Token("")));
    // Routes and methods.
    cases.push(get("unknown route", "/api/v1/nope", 404));
    cases.push(get("unknown route outside the API", "/admin", 404));
    cases.push(with_auth(get("unknown route without a token", "/api/v2/people", 404), Auth::Nobody));
    cases.push(get("unknown nested route", "/api/v1/people/alice/cards", 404));
    cases.push(case("PUT on a collection", Method::PUT, "/api/v1/people", Body::Json(json!({"name": "x"})), 405));
    cases.push(case("DELETE on decisions", Method::DELETE, "/api/v1/decisions", Body::None, 405));
    cases.push(case("GET on decisions", Method::GET, "/api/v1/decisions", Body::None, 405));
    cases.push(case("POST on a person", Method::POST, "/api/v1/people/alice", Body::Json(json!({})), 405));
    cases.push(case("PUT on a grant", Method::PUT, "/api/v1/grants/g-1", Body::Json(json!({})), 405));
    cases.push(case("POST on healthz", Method::POST, "/healthz", Body::None, 405));
    cases.push(case("GET on open", Method::GET, "/open/front", Body::None, 405));
    cases
}

async fn directory_bad_input_changes_nothing(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    world(&s).await;
    let before = snapshot(&s).await;
    run_all(&s, &directory_cases()).await;
    assert_eq!(snapshot(&s).await, before, "bad input changed the store");
}

async fn decision_and_event_bad_input_changes_nothing(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    world(&s).await;
    let before = snapshot(&s).await;
    run_all(&s, &decision_and_event_cases()).await;
    assert_eq!(snapshot(&s).await, before, "bad input changed the store");
    // The same server still decides.
    let ok = s.decide("front", json!({"kind": "card", "uid": "04A1B2C3", "revocation_code": "7"})).await;
    assert_eq!(ok["reason"], "granted");
}

async fn unauthenticated_and_unrouted_requests_change_nothing(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    world(&s).await;
    let before = snapshot(&s).await;
    run_all(&s, &auth_and_route_cases()).await;
    assert_eq!(snapshot(&s).await, before, "refused requests changed the store");
    let answer = send(s.client.get(format!("{}/api/v1/people", s.base))).await;
    assert_eq!(answer.headers.get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));
    // A 405 says which methods the route does take.
    let answer = send(s.client.put(format!("{}/api/v1/people", s.base)).bearer_auth(ADMIN)).await;
    let allow = answer.headers.get("allow").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST") && !allow.contains("PUT"), "Allow: {allow:?}");
}

/// A conflict half-way through a write leaves nothing behind.
async fn rejected_writes_are_not_half_applied(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    world(&s).await;
    let (status, _) = s
        .patch("/api/v1/people/alice", json!({"name": "Changed", "skills": ["laser"], "external_ids": {"crm": "B-2"}}))
        .await;
    assert_eq!(status, 409);
    let alice = s.get("/api/v1/people/alice").await.1;
    assert_eq!(alice["name"], "Alice", "{alice}");
    assert_eq!(alice["skills"], json!([]));
    assert_eq!(alice["external_ids"], json!({"crm": "A-1"}));
    assert_eq!(
        s.post("/api/v1/people", json!({"id": "carol", "name": "C", "external_ids": {"crm": "A-1"}})).await.0,
        409
    );
    assert_eq!(s.get("/api/v1/people/carol").await.0, 404);
    assert_eq!(s.post("/api/v1/groups", json!({"id": "g2", "name": "G", "doors": ["front", "nope"]})).await.0, 404);
    assert_eq!(s.get("/api/v1/groups/g2").await.0, 404);
    let grants_before = s.get("/api/v1/grants").await.1;
    assert_eq!(s.post("/api/v1/grants", json!({"person_id": "bob", "doors": ["front", "nope"]})).await.0, 404);
    assert_eq!(s.get("/api/v1/grants").await.1, grants_before);
    // bob was not let in through a half-made grant.
    s.ok("/api/v1/people/bob/credentials", json!({"kind": "card", "uid": "0B0B0B0B"}), 201).await;
    assert_eq!(s.decide("front", json!({"kind": "card", "uid": "0B0B0B0B"})).await["reason"], "no_grant");
    // The card that is alice's stays alice's.
    assert_eq!(s.post("/api/v1/people/bob/credentials", json!({"kind": "card", "uid": "04A1B2C3"})).await.0, 409);
    let ok = s.decide("front", json!({"kind": "card", "uid": "04A1B2C3", "revocation_code": "7"})).await;
    assert_eq!(ok["person_id"], "alice", "{ok}");
    // Another person's PIN is not issued twice.
    assert_eq!(s.post("/api/v1/people/bob/credentials", json!({"kind": "pin", "pin": "4711"})).await.0, 409);
    let ok = s.decide("front", json!({"kind": "pin", "pin": "4711"})).await;
    assert_eq!(ok["person_id"], "alice", "{ok}");
}

/// Credential kinds without fields of their own (`secret`, `backup_code`) must refuse
/// fields like any other body: `{"kind": "secret", "secret": "mine"}` looks as if it set
/// the secret, but the server would silently generate another.
async fn fieldless_kinds_refuse_unknown_fields(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    world(&s).await;
    let before = snapshot(&s).await;
    run_all(
        &s,
        &[
            post(
                "secret with a chosen secret",
                "/api/v1/people/alice/credentials",
                json!({"kind": "secret", "secret": "my-own-secret"}),
                422,
            ),
            post(
                "backup code with a chosen code",
                "/api/v1/people/alice/credentials",
                json!({"kind": "backup_code", "code": "AAAAA-BBBBB"}),
                422,
            ),
            post(
                "driver none with a URL",
                "/api/v1/doors",
                json!({"id": "d2", "name": "D", "driver": {"kind": "none", "url": "http://192.0.2.1"}}),
                422,
            ),
        ],
    )
    .await;
    assert_eq!(snapshot(&s).await, before, "bad input changed the store");
}

/// Every route answers an oversized body with a 413 problem document.
async fn oversized_bodies_get_a_problem_on_every_route(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    world(&s).await;
    let before = snapshot(&s).await;
    let big = json!({"note": "n".repeat(70 * 1024)}).to_string();
    let mut cases = Vec::new();
    for (method, path) in [
        (Method::POST, "/api/v1/people"),
        (Method::PATCH, "/api/v1/people/alice"),
        (Method::POST, "/api/v1/people/alice/credentials"),
        (Method::POST, "/api/v1/doors"),
        (Method::PATCH, "/api/v1/doors/front"),
        (Method::POST, "/api/v1/groups"),
        (Method::POST, "/api/v1/grants"),
        (Method::POST, "/api/v1/decisions"),
        (Method::POST, "/api/v1/doors/front/open"),
    ] {
        cases.push(raw("over 64 KiB", method, path, Some("application/json"), big.as_bytes(), 413));
    }
    run_all(&s, &cases).await;
    assert_eq!(snapshot(&s).await, before);
}

/// The routes that read their body as raw bytes (webhooks, signed operations) answer a
/// body over `max_body_bytes` like every other route: a 413 problem document, also in
/// the OpenAPI document. Their tokens in the query string are read strictly too.
async fn raw_body_routes_answer_413_with_a_problem(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    world(&s).await;
    let before = snapshot(&s).await;
    let big = json!({"note": "n".repeat(70 * 1024)}).to_string();
    let form = format!("payload={}", "n".repeat(70 * 1024));
    let json_ct = Some("application/json");
    let form_ct = Some("application/x-www-form-urlencoded");
    let routes = [
        ("/hooks/cobot/confirmed_membership", json_ct, big.as_bytes()),
        ("/hooks/lockcloud?token=t", json_ct, big.as_bytes()),
        ("/hooks/doorbell?token=t", json_ct, big.as_bytes()),
        ("/hooks/slack/commands", form_ct, form.as_bytes()),
        ("/hooks/slack/events", json_ct, big.as_bytes()),
        ("/hooks/slack/interactions", form_ct, form.as_bytes()),
        ("/api/v1/operations", Some("text/plain"), big.as_bytes()),
    ];
    let mut cases: Vec<Case> = routes
        .iter()
        .map(|(path, ct, body)| with_auth(raw("over 64 KiB", Method::POST, path, *ct, body, 413), Auth::Nobody))
        .collect();
    for path in ["/hooks/lockcloud?token=a&token=b", "/hooks/doorbell?token=a&token=b"] {
        cases.push(with_auth(raw("the token twice", Method::POST, path, json_ct, b"{}", 400), Auth::Nobody));
    }
    run_all(&s, &cases).await;
    assert_eq!(snapshot(&s).await, before);
    let doc = s.get("/openapi.json").await.1;
    for (path, _, _) in routes {
        let path = path.split('?').next().unwrap().replace("confirmed_membership", "{event}");
        let responses = &doc["paths"][&path]["post"]["responses"];
        assert!(responses.get("413").is_some(), "POST {path} does not document its 413: {responses}");
    }
}

/// Path segments that are not UTF-8 once decoded are bad input like any other.
async fn undecodable_path_segments_get_a_problem(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    world(&s).await;
    let before = snapshot(&s).await;
    run_all(
        &s,
        &[
            get("person id %FF", "/api/v1/people/%FF", 0),
            get("door id %C3%28", "/api/v1/doors/%C3%28", 0),
            delete("grant id %FF", "/api/v1/grants/%FF", 0),
            post("open %FF", "/api/v1/doors/%FF/open", json!({}), 0),
            with_auth(post("open with secret %FF", "/open/%FF", json!({}), 0), Auth::Token("lsk_x")),
        ],
    )
    .await;
    assert_eq!(snapshot(&s).await, before);
}

crate::on_both_backends!(
    directory_bad_input_changes_nothing,
    decision_and_event_bad_input_changes_nothing,
    unauthenticated_and_unrouted_requests_change_nothing,
    rejected_writes_are_not_half_applied,
    fieldless_kinds_refuse_unknown_fields,
    oversized_bodies_get_a_problem_on_every_route,
    raw_body_routes_answer_413_with_a_problem,
    undecodable_path_segments_get_a_problem,
);
