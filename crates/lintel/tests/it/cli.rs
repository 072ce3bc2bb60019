//! The operator's commands against a real database, next to a running server:
//! `lintel import` (report, idempotence, the server picking up the changes).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Backend, Database, Server, card, lintel, write_file};

fn import(db: &Database, file: &std::path::Path) -> (i32, String) {
    let out = lintel()
        .args(["import", "--quiet", "--database-url", &db.url])
        .arg(file)
        .current_dir(&db.dir)
        .output()
        .expect("lintel import runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Asks until the answer has the expected reason: the server notices changes made by
/// another process on its next look at the directory version.
async fn eventually(s: &Server, credential: Value, reason: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = s.decide("front", credential.clone()).await;
        if answer["reason"] == reason || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn import_reports_rejects_and_is_idempotent(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    s.ok("/api/v1/doors", json!({"id": "front", "name": "Front"}), 201).await;
    s.ok("/api/v1/groups", json!({"id": "members", "name": "Members", "doors": ["front"]}), 201).await;
    s.ok("/api/v1/groups", json!({"id": "staff", "name": "Staff", "doors": []}), 201).await;
    s.ok("/api/v1/grants", json!({"group_id": "members"}), 201).await;
    s.ok("/api/v1/people", json!({"id": "zoe", "name": "Zoe"}), 201).await;
    s.ok("/api/v1/people/zoe/credentials", json!({"kind": "card", "uid": "0BADCAFE"}), 201).await;

    let csv = "id,name,email,card_uid,revocation_code,groups,status\n\
               ann,Ann Example,ann@example.org,04A1B2C3,1,members;staff,active\n\
               bo,Bo,,not-hex,,members,\n\
               cy,Cy,cy@example.org,04C0FFEE,,ghosts,\n\
               di,Di,di@example.org,04A1B2C3,,members,\n\
               ed,Ed,ed@example.org,0BADCAFE,,members,\n\
               fi,Fi,fi@example.org,,,members,paused\n\
               gus,Gus,gus@example.org,04D00D00,2,members,suspended\n";
    let file = write_file(&db.dir, "people.csv", csv);
    let (code, out) = import(&db, &file);
    assert_eq!(code, 1, "rejected rows make the exit status 1:\n{out}");
    assert!(out.contains("2 new"), "{out}");
    for (line, why) in
        [(3, "card_uid"), (4, "unknown group"), (5, "appears twice"), (6, "another person"), (7, "status")]
    {
        let row = out
            .lines()
            .find(|l| l.contains(&format!("line {line}:")))
            .unwrap_or_else(|| panic!("no report of line {line}:\n{out}"));
        assert!(row.contains(why), "line {line} should say {why:?}: {row}");
    }
    assert!(!out.contains("line 2:") && !out.contains("line 8:"), "{out}");

    // The running server picks the import up by itself.
    assert_eq!(eventually(&s, card("04A1B2C3", Some("1")), "granted").await["reason"], "granted");
    assert_eq!(s.decide("front", card("04D00D00", Some("2"))).await["reason"], "person_suspended");
    let ann = s.get("/api/v1/people/ann").await.1;
    assert_eq!(ann["groups"], json!(["members", "staff"]));
    // Rejected rows changed nothing.
    assert_eq!(s.get("/api/v1/people/bo").await.0, 404);
    assert_eq!(s.decide("front", card("0BADCAFE", None)).await["person_id"], "zoe");

    // Running the same file again changes nothing.
    let (_, again) = import(&db, &file);
    assert!(again.contains("0 new, 0 updated, 2 unchanged"), "{again}");
    assert!(again.contains("0 issued, 0 replaced"), "{again}");

    // A changed file moves people: a new revocation code, a group left.
    let csv = "id,name,email,card_uid,revocation_code,groups\nann,Ann Renamed,ann@example.org,04A1B2C3,2,staff\n";
    let file = write_file(&db.dir, "people2.csv", csv);
    let (code, out) = import(&db, &file);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 updated") && out.contains("1 replaced") && out.contains("1 removed"), "{out}");
    let answer = eventually(&s, card("04A1B2C3", Some("2")), "no_grant").await;
    assert_eq!(answer["reason"], "no_grant", "ann left the members group: {answer}");
    assert_eq!(s.decide("front", card("04A1B2C3", Some("1"))).await["reason"], "revoked_card");
}

/// A write of ours right after another process wrote (a version gap) still shows at once;
/// the other process's changes follow with the next reload.
async fn own_writes_show_at_once_across_a_foreign_write(b: Backend) {
    let db = Database::new(b);
    let s = Server::start_with(&db, &[("LINTEL_FOLLOW_INTERVAL_MS", "60000")]);
    s.ok("/api/v1/doors", json!({"id": "front", "name": "Front"}), 201).await;
    s.ok("/api/v1/groups", json!({"id": "members", "name": "Members", "doors": ["front"]}), 201).await;
    s.ok("/api/v1/grants", json!({"group_id": "members"}), 201).await;
    let file = write_file(&db.dir, "p.csv", "id,name,email,card_uid,groups\nhal,Hal,,0A0A0A0A,members\n");
    assert_eq!(import(&db, &file).0, 0);
    // On SQLite the server has not seen the import yet (its follower waits a minute); on
    // PostgreSQL the import's notification may have brought it in already ...
    if matches!(b, Backend::Sqlite) {
        assert_eq!(s.decide("front", card("0A0A0A0A", None)).await["reason"], "unknown_credential");
    }
    // ... but what it writes itself counts at once, and the gap it notices makes it fetch
    // the other process's changes right away.
    s.ok("/api/v1/people/hal/credentials", json!({"kind": "card", "uid": "0B0B0B0B"}), 201).await;
    assert_ne!(s.decide("front", card("0B0B0B0B", None)).await["reason"], "unknown_credential");
    assert_eq!(eventually(&s, card("0A0A0A0A", None), "granted").await["reason"], "granted");
    assert_eq!(s.decide("front", card("0B0B0B0B", None)).await["reason"], "granted");
    s.ok("/api/v1/people", json!({"id": "ivy", "name": "Ivy"}), 201).await;
    s.ok("/api/v1/people/ivy/credentials", json!({"kind": "card", "uid": "0C0C0C0C"}), 201).await;
    assert_eq!(s.put("/api/v1/groups/members/members/ivy").await.0, 204);
    assert_eq!(s.decide("front", card("0C0C0C0C", None)).await["reason"], "granted");
}

async fn backup_codes_open_a_door_once_each(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    s.ok("/api/v1/doors", json!({"id": "front", "name": "Front"}), 201).await;
    s.ok("/api/v1/doors", json!({"id": "lab", "name": "Lab"}), 201).await;
    let out = lintel()
        .args(["backup-codes", "--door", "front", "--count", "3", "--database-url", &db.url])
        .current_dir(&db.dir)
        .output()
        .expect("lintel runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let codes: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect();
    assert_eq!(codes.len(), 3, "{codes:?}");
    let code = |c: &str| json!({"kind": "backup_code", "code": c});
    // The server picks the codes up from the store, then each opens the door once.
    let first = eventually(&s, code(&codes[0]), "granted").await;
    assert_eq!(first["reason"], "granted", "{first}");
    assert_eq!(s.decide("front", code(&codes[0])).await["reason"], "credential_revoked", "used once, then never");
    assert_eq!(s.decide("lab", code(&codes[1])).await["reason"], "no_grant", "only for its door");
    let open = |c: &str| s.client.post(format!("{}/open/front", s.base)).bearer_auth(c.to_owned()).send();
    assert_eq!(open(&codes[1]).await.unwrap().status(), 200, "a code works as the bearer of /open too");
    assert_eq!(open(&codes[1]).await.unwrap().status(), 403);
    // A keypad sends the code's digits as a PIN.
    let typed = json!({"kind": "pin", "pin": codes[2].replace('-', "")});
    assert_eq!(s.decide("front", typed.clone()).await["reason"], "granted", "{codes:?}");
    assert_eq!(s.decide("front", typed).await["reason"], "credential_revoked");
    // More codes for the same door reuse the holder and its grant.
    let again = lintel()
        .args(["backup-codes", "--door", "front", "--count", "1", "--database-url", &db.url])
        .current_dir(&db.dir)
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(s.get("/api/v1/grants?person_id=backup-front").await.1.as_array().map(Vec::len), Some(1));
    let unknown = lintel()
        .args(["backup-codes", "--door", "nope", "--database-url", &db.url])
        .current_dir(&db.dir)
        .output()
        .unwrap();
    assert!(!unknown.status.success());
}

async fn import_refuses_a_file_without_the_required_columns(b: Backend) {
    let db = Database::new(b);
    crate::harness::init(&db);
    let file = write_file(&db.dir, "bad.csv", "id,name\nx,X\n");
    let out = lintel()
        .args(["import", "--quiet", "--database-url", &db.url])
        .arg(&file)
        .current_dir(&db.dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("email"), "{err}");
}

async fn a_server_refuses_a_key_file_that_is_not_the_databases(b: Backend) {
    let db = Database::new(b);
    let s = Server::start_with(&db, &[("LINTEL_KEY_FILE", "first.key")]);
    s.kill();
    let serve_with = |key: &str| {
        lintel()
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &db.url])
            .env("LINTEL_KEY_FILE", key)
            .current_dir(&db.dir)
            .output()
            .expect("lintel runs")
    };
    // A database set up before gets no new key file: it would never match.
    let out = serve_with("second.key");
    assert!(!out.status.success(), "a server without its key must not start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("second.key") && err.contains("restore it"), "{err}");
    assert!(!db.dir.join("second.key").exists(), "a key file was made for a database that has one");
    write_file(&db.dir, "second.key", &"ab".repeat(32));
    let out = serve_with("second.key");
    assert!(!out.status.success(), "a server with another key must not start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("second.key") && err.contains("not the one"), "{err}");
    // With its own key it starts again.
    let s = Server::start_with(&db, &[("LINTEL_KEY_FILE", "first.key")]);
    assert_eq!(s.get("/readyz").await.0, 200);
}

/// `lintel token create` in the wrong place: no new empty database and no token the server
/// would refuse, but an error naming where it looked; `lintel init` sets one up.
async fn commands_do_not_create_databases(b: Backend) {
    let db = Database::new(b);
    let token_create = || {
        lintel()
            .args(["token", "create", "--name", "ops", "--database-url", &db.url])
            .current_dir(&db.dir)
            .output()
            .expect("lintel runs")
    };
    let out = token_create();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && out.stdout.is_empty(), "a token for no database: {err}");
    assert!(err.contains("lintel init"), "{err}");
    if b == Backend::Sqlite {
        assert!(err.contains(&db.dir.join("lintel.db").display().to_string()), "the path it looked at: {err}");
        assert!(!db.dir.join("lintel.db").exists(), "a database was created");
    } else {
        assert!(err.contains("no lintel tables"), "{err}");
    }
    assert!(!db.dir.join("lintel.key").exists(), "a key file was created");

    let init = lintel().args(["init", "--database-url", &db.url]).current_dir(&db.dir).output().expect("lintel runs");
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    assert!(String::from_utf8_lossy(&init.stdout).contains("lintel.key"), "init names the key files");
    assert!(db.dir.join("lintel.key").exists() && db.dir.join("lintel.signing.key").exists());
    let out = token_create();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let s = Server::start(&db);
    let answer = s.client.get(format!("{}/api/v1/doors", s.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(answer.status(), 200, "the server takes the token made after init");
}

/// A database URL that cannot be opened fails at once with its cause (not the pool's
/// timeout after 10 s); no key file is made beside a file that is not a lintel database.
async fn a_database_that_cannot_be_opened_fails_at_once(_: Backend) {
    let db = Database::new(Backend::Sqlite);
    let notes = write_file(&db.dir, "notes.txt", "not a database, and not lintel's\n");
    for (url, cause) in [
        ("postgres://postgres@127.0.0.1:1/lintel".to_owned(), "refused"),
        (format!("sqlite://{}/missing-dir/lintel.db", db.dir.display()), "unable to open"),
        (format!("sqlite://{}", notes.display()), "not a database"),
    ] {
        let began = std::time::Instant::now();
        let out = lintel()
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &url])
            .current_dir(&db.dir)
            .output()
            .expect("lintel runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url}: {err}");
        assert!(began.elapsed() < Duration::from_secs(5), "{url}: took {:?}", began.elapsed());
        assert!(err.contains(cause) && !err.contains("timed out"), "{url}: {err}");
    }
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "not a database, and not lintel's\n");
    assert!(!db.dir.join("notes.key").exists(), "a key file beside a file that is not lintel's");
    assert!(!db.dir.join("lintel.key").exists(), "a key file for a database that never opened");
}

crate::on_both_backends!(
    import_reports_rejects_and_is_idempotent,
    import_refuses_a_file_without_the_required_columns,
    a_server_refuses_a_key_file_that_is_not_the_databases,
    own_writes_show_at_once_across_a_foreign_write,
    backup_codes_open_a_door_once_each,
    commands_do_not_create_databases;
    sqlite only: a_database_that_cannot_be_opened_fails_at_once,
);
