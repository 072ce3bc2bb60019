//! Makerspace RFID stations: a station presents the person id and revocation code written
//! on its card (`{"kind": "member", ...}`) at its door or tool, with a token that may only
//! ask decisions, and shows the name, allowed and reason it gets back. Allowed check-ins
//! appear live on the facility display, with the person's photo when there is one.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{ADMIN, Backend, Database, Server, lintel};

/// A JPEG as far as anyone checks: its magic number, then anything.
const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00ann at the lathe";

fn member(person_id: &str, code: &str) -> Value {
    json!({"kind": "member", "person_id": person_id, "revocation_code": code})
}

/// The entrance and a lathe (a tool: needs the skill `lathe`); Ann (lathe checkoff, card
/// code A1), Bob (no checkoff, B1), Cy (suspended, C1), Dee (no card with a code); all
/// with a grant for both.
async fn makerspace(s: &Server) {
    s.ok("/api/v1/doors", json!({"id": "entrance", "name": "Entrance"}), 201).await;
    s.ok("/api/v1/doors", json!({"id": "lathe", "name": "Lathe", "required_skill": "lathe"}), 201).await;
    let people = [
        ("ann", "Ann Lovelace", json!(["lathe"]), "active", Some(("A1A1", "A1"))),
        ("bob", "Bob Builder", json!([]), "active", Some(("B1B1", "B1"))),
        ("cy", "Cy Borg", json!(["lathe"]), "suspended", Some(("C1C1", "C1"))),
        ("dee", "Dee Five", json!([]), "active", None),
    ];
    for (id, name, skills, status, card) in people {
        s.ok("/api/v1/people", json!({"id": id, "name": name, "skills": skills, "status": status}), 201).await;
        if let Some((uid, code)) = card {
            s.ok(
                &format!("/api/v1/people/{id}/credentials"),
                json!({"kind": "card", "uid": uid, "revocation_code": code}),
                201,
            )
            .await;
        }
        s.ok("/api/v1/grants", json!({"person_id": id, "doors": ["entrance", "lathe"]}), 201).await;
    }
}

async fn station_asks(s: &Server, door: &str, credential: Value) -> Value {
    s.decide(door, credential).await
}

async fn a_station_checks_a_member_in_and_shows_their_name(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    makerspace(&s).await;

    let answer = station_asks(&s, "entrance", member("ann", "A1")).await;
    assert_eq!(
        (&answer["allowed"], &answer["reason"], &answer["person_id"], &answer["name"]),
        (&json!(true), &json!("granted"), &json!("ann"), &json!("Ann Lovelace")),
        "{answer}"
    );
    let event = s.events().await.into_iter().find(|e| e["id"] == answer["event_id"]).expect("the check-in is recorded");
    assert_eq!((&event["person_id"], &event["data"]["credential_kind"]), (&json!("ann"), &json!("member")), "{event}");

    // Nobody by that id: a distinct answer (not an error), naming nobody, recording the id.
    let unknown = station_asks(&s, "entrance", member("zed", "A1")).await;
    assert_eq!(
        (&unknown["allowed"], &unknown["reason"], &unknown["person_id"], unknown.get("name")),
        (&json!(false), &json!("unknown_member"), &Value::Null, None),
        "{unknown}"
    );
    let event = s.events().await.into_iter().find(|e| e["id"] == unknown["event_id"]).expect("recorded");
    assert_eq!(event["data"]["member"], "zed", "{event}");
    // Someone who holds no card with a revocation code is not known to stations either.
    assert_eq!(station_asks(&s, "entrance", member("dee", "D1")).await["reason"], "unknown_member");
    // A wrong code names the person (the station shows who should get a new card).
    let stale = station_asks(&s, "entrance", member("bob", "B0")).await;
    assert_eq!((&stale["reason"], &stale["name"]), (&json!("revoked_card"), &json!("Bob Builder")), "{stale}");

    // A dry run answers the same, with the name, and records nothing.
    let before = s.events().await.len();
    let (status, dry) = s
        .post("/api/v1/decisions", json!({"door": "entrance", "credential": member("ann", "A1"), "dry_run": true}))
        .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(
        (&dry["reason"], &dry["name"], &dry["event_id"]),
        (&json!("granted"), &json!("Ann Lovelace"), &Value::Null)
    );
    assert_eq!(s.events().await.len(), before, "a dry run records nothing");

    // Other credentials answer as before, without a name.
    let (_, card) = s
        .post(
            "/api/v1/decisions",
            json!({"door": "entrance", "credential": {"kind": "card", "uid": "A1A1", "revocation_code": "A1"}}),
        )
        .await;
    assert_eq!((&card["reason"], card.get("name")), (&json!("granted"), None), "{card}");

    // Bad input is a 422 problem, never a decision.
    for bad in [
        member("", "A1"),
        member("ann", ""),
        member("a/b", "A1"),
        member("ann", &"x".repeat(65)),
        json!({"kind": "member", "person_id": "ann"}),
        json!({"kind": "member", "person_id": "ann", "revocation_code": "A1", "extra": 1}),
    ] {
        let (status, problem) = s.post("/api/v1/decisions", json!({"door": "entrance", "credential": bad})).await;
        assert_eq!(status, 422, "{bad} -> {problem}");
    }
}

async fn a_new_card_makes_the_older_code_stop_working(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    makerspace(&s).await;
    assert_eq!(station_asks(&s, "entrance", member("ann", "A1")).await["reason"], "granted");
    // Ann lost her card: a new one (another UID) with a new code.
    let new_card = s
        .ok("/api/v1/people/ann/credentials", json!({"kind": "card", "uid": "A2A2", "revocation_code": "A2"}), 201)
        .await;
    let old = station_asks(&s, "entrance", member("ann", "A1")).await;
    assert_eq!((&old["allowed"], &old["reason"]), (&json!(false), &json!("revoked_card")), "{old}");
    assert_eq!(station_asks(&s, "entrance", member("ann", "A2")).await["reason"], "granted");
    // The same card re-encoded with a new code (same UID) works the same way.
    s.ok("/api/v1/people/ann/credentials", json!({"kind": "card", "uid": "A2A2", "revocation_code": "A3"}), 201).await;
    assert_eq!(station_asks(&s, "entrance", member("ann", "A2")).await["reason"], "revoked_card");
    assert_eq!(station_asks(&s, "entrance", member("ann", "A3")).await["reason"], "granted");
    // Revoking the current card leaves Ann without a working station card; older ones stay dead.
    let (_, creds) = s.get("/api/v1/people/ann/credentials").await;
    let current_id = creds
        .as_array()
        .and_then(|items| items.iter().find(|c| c["revocation_code"] == "A3" && c["status"] == "active"))
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("the A3 card is listed: {creds}"));
    assert_ne!(json!(current_id), new_card["id"]);
    assert_eq!(s.delete(&format!("/api/v1/credentials/{current_id}")).await.0, 200);
    assert_eq!(station_asks(&s, "entrance", member("ann", "A3")).await["reason"], "credential_revoked");
    assert_eq!(station_asks(&s, "entrance", member("ann", "A1")).await["reason"], "revoked_card");

    // A restart rebuilds the index from the store and comes to the same answers.
    drop(s);
    let s = Server::start(&db);
    assert_eq!(station_asks(&s, "entrance", member("ann", "A3")).await["reason"], "credential_revoked");
    assert_eq!(station_asks(&s, "entrance", member("bob", "B1")).await["reason"], "granted");
}

async fn suspended_members_and_tools_without_the_skill_are_refused(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    makerspace(&s).await;
    // Suspension comes before the code: even the right one does not help.
    for code in ["C1", "wrong"] {
        let cy = station_asks(&s, "entrance", member("cy", code)).await;
        assert_eq!((&cy["reason"], &cy["name"]), (&json!("person_suspended"), &json!("Cy Borg")), "{cy}");
    }
    // The lathe needs its checkoff: Bob gets in at the entrance but not at the lathe.
    assert_eq!(station_asks(&s, "entrance", member("bob", "B1")).await["reason"], "granted");
    let lathe = station_asks(&s, "lathe", member("bob", "B1")).await;
    assert_eq!((&lathe["allowed"], &lathe["reason"]), (&json!(false), &json!("missing_skill")), "{lathe}");
    assert_eq!(station_asks(&s, "lathe", member("ann", "A1")).await["reason"], "granted");
    // Bob passes the checkoff.
    let (status, _) = s.patch("/api/v1/people/bob", json!({"skills": ["lathe"]})).await;
    assert_eq!(status, 200);
    assert_eq!(station_asks(&s, "lathe", member("bob", "B1")).await["reason"], "granted");
    // Lifting Cy's suspension lets the card in again; deleting Bob makes him unknown.
    assert_eq!(s.patch("/api/v1/people/cy", json!({"status": "active"})).await.0, 200);
    assert_eq!(station_asks(&s, "lathe", member("cy", "C1")).await["reason"], "granted");
    assert_eq!(s.delete("/api/v1/people/bob").await.0, 204);
    assert_eq!(station_asks(&s, "entrance", member("bob", "B1")).await["reason"], "unknown_member");
    assert_eq!(station_asks(&s, "nowhere", member("ann", "A1")).await["reason"], "unknown_door");
}

fn cli_token(db: &Database, args: &[&str]) -> std::process::Output {
    lintel()
        .args(["token", "create", "--database-url", &db.url])
        .args(args)
        .current_dir(&db.dir)
        .output()
        .expect("lintel token create runs")
}

async fn a_station_token_may_only_ask_decisions(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    makerspace(&s).await;
    let created = cli_token(&db, &["--name", "lathe-station", "--scope", "decisions", "--door", "lathe"]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let lathe_token = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let created = cli_token(&db, &["--name", "any-station", "--scope", "decisions"]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let any_token = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    for bad in [&["--name", "x", "--scope", "root"][..], &["--name", "y", "--door", "lathe"]] {
        assert!(!cli_token(&db, bad).status.success(), "{bad:?} is refused");
    }
    let listed = lintel().args(["token", "list", "--database-url", &db.url]).current_dir(&db.dir).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.lines().any(|l| l.starts_with("lathe-station\t") && l.ends_with("\tdecisions:lathe")), "{listed}");
    assert!(listed.lines().any(|l| l.starts_with("any-station\t") && l.ends_with("\tdecisions")), "{listed}");

    let ask = |token: &str, door: &str| {
        s.client
            .post(format!("{}/api/v1/decisions", s.base))
            .bearer_auth(token)
            .json(&json!({"door": door, "credential": member("ann", "A1")}))
            .send()
    };
    // The server loads new tokens within a moment.
    let started = std::time::Instant::now();
    let answer = loop {
        let answer = ask(&lathe_token, "lathe").await.unwrap();
        if answer.status() != 401 || started.elapsed() > Duration::from_secs(5) {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(answer.status(), 200);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!((&answer["reason"], &answer["name"]), (&json!("granted"), &json!("Ann Lovelace")), "{answer}");
    // Its own door only.
    let elsewhere = ask(&lathe_token, "entrance").await.unwrap();
    assert_eq!(elsewhere.status(), 403);
    let problem: Value = elsewhere.json().await.unwrap();
    assert_eq!(problem["type"], "urn:lintel:problem:forbidden", "{problem}");
    assert_eq!(ask(&any_token, "entrance").await.unwrap().status(), 200);

    // Nothing an admin does: reading or changing the directory, opening doors, tokens in the UI.
    for token in [&lathe_token, &any_token] {
        let client = &s.client;
        let base = &s.base;
        let refused = [
            client.get(format!("{base}/api/v1/people")).bearer_auth(token).send().await.unwrap(),
            client.get(format!("{base}/api/v1/people/ann/photo")).bearer_auth(token).send().await.unwrap(),
            client
                .post(format!("{base}/api/v1/people"))
                .bearer_auth(token)
                .json(&json!({"name": "Mallory"}))
                .send()
                .await
                .unwrap(),
            client.post(format!("{base}/api/v1/doors/lathe/open")).bearer_auth(token).send().await.unwrap(),
            client.get(format!("{base}/api/v1/events")).bearer_auth(token).send().await.unwrap(),
        ];
        for answer in refused {
            assert_eq!(answer.status(), 401, "{}", answer.url());
        }
        let login = login_client()
            .post(format!("{base}/ui/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}&next=%2Fui%2Fdisplay"))
            .send()
            .await
            .unwrap();
        assert!(login.headers().get("set-cookie").is_none(), "a station token signs in to the web UI");
    }
    assert_eq!(s.get("/api/v1/people").await.0, 200, "the admin token still works");
}

pub(crate) fn login_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Signs in to the web UI with the admin token; the session cookie.
pub(crate) async fn ui_session(s: &Server) -> String {
    let login = login_client()
        .post(format!("{}/ui/login", s.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN}&next=%2Fui%2Fdisplay"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303, "signing in redirects");
    let cookie = login.headers().get("set-cookie").expect("a session cookie").to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

/// Reads a Server-Sent Events stream until a chunk contains `wanted`; everything read.
async fn read_until(stream: &mut reqwest::Response, seen: &mut String, wanted: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(wanted) {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("{wanted:?} did not arrive on the display's stream; got {seen}"))
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

async fn the_display_shows_check_ins_live_with_photos(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    makerspace(&s).await;
    // Ann has a photo (in `photos` beside the database, without any CRM); Bob has none.
    std::fs::create_dir_all(db.dir.join("photos")).unwrap();
    std::fs::write(db.dir.join("photos").join("ann.jpg"), JPEG).unwrap();
    let cookie = ui_session(&s).await;
    let ui = |path: &str| login_client().get(format!("{}{path}", s.base)).header("cookie", &cookie).send();

    let mut stream = ui("/ui/live?view=display").await.unwrap();
    assert_eq!(stream.status(), 200);
    assert!(stream.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    // A denied tap does not show; the next check-ins do, with photo or initials.
    station_asks(&s, "lathe", member("bob", "B1")).await;
    let ann = station_asks(&s, "entrance", member("ann", "A1")).await;
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "Ann Lovelace").await;
    assert!(seen.contains(r#"<img class="avatar photo" src="/ui/people/ann/photo""#), "{seen}");
    assert!(seen.contains(&format!("id: {}", ann["event_id"].as_str().unwrap())), "{seen}");
    assert!(!seen.contains("Bob Builder"), "a refused tap is not a check-in: {seen}");
    station_asks(&s, "entrance", member("bob", "B1")).await;
    read_until(&mut stream, &mut seen, "Bob Builder").await;
    let bob_tile = &seen[seen.find("Bob Builder").map(|i| seen[..i].rfind("<li").unwrap()).unwrap()..];
    assert!(bob_tile.contains(r#"aria-hidden="true">BB</span>"#) && !bob_tile.contains("<img"), "{bob_tile}");

    // The page itself shows both, under a strict CSP and no inline script.
    let page = ui("/ui/display").await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("img-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"src="/ui/people/ann/photo""#) && html.contains("Bob Builder"), "{html}");
    assert!(!html.contains("<script>"), "no inline script");

    // The photo route serves the JPEG to a session only.
    let photo = ui("/ui/people/ann/photo").await.unwrap();
    assert_eq!(photo.status(), 200);
    assert_eq!(photo.headers()["content-type"], "image/jpeg");
    assert_eq!(photo.bytes().await.unwrap().as_ref(), JPEG);
    assert_eq!(ui("/ui/people/bob/photo").await.unwrap().status(), 404, "Bob has no photo");
    assert_eq!(ui("/ui/people/nobody/photo").await.unwrap().status(), 404);
    let anonymous = login_client().get(format!("{}/ui/people/ann/photo", s.base)).send().await.unwrap();
    assert_eq!(anonymous.status(), 303, "without a session: to the sign-in page");
    let with_token =
        login_client().get(format!("{}/ui/people/ann/photo", s.base)).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(with_token.status(), 303, "the UI route wants a session, not a token");
    // The admin API serves the same photo now that it does not need the CRM.
    let api = s.client.get(format!("{}/api/v1/people/ann/photo", s.base)).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(api.status(), 200);
}

crate::on_both_backends!(
    a_station_checks_a_member_in_and_shows_their_name,
    a_new_card_makes_the_older_code_stop_working,
    suspended_members_and_tools_without_the_skill_are_refused,
    a_station_token_may_only_ask_decisions,
    the_display_shows_check_ins_live_with_photos,
);
