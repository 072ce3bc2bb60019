//! Backups that restore: `lintel backup` copies a running SQLite database with both key
//! files, `lintel restore` puts it back (and refuses a backup whose key is not its
//! database's); on PostgreSQL, pg_dump restored into a fresh database with the key files.
//! After a restore every decision is the one of the time of the backup.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::harness::{Backend, Database, Server, card, lintel, small_world};

fn run(db: &Database, args: &[&str]) -> Output {
    lintel().args(args).args(["--database-url", &db.url]).current_dir(&db.dir).output().expect("lintel runs")
}

fn tool(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program} is needed: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Alice's card and PIN (the PIN checked with the key file), Bob's card, Carol's card.
fn credentials() -> Vec<Value> {
    vec![
        card("04A1B2C3", Some("7")),
        json!({"kind": "pin", "pin": "4711"}),
        card("0B0B0B02", None),
        card("0C0C0C03", None),
    ]
}

async fn decisions(s: &Server) -> Vec<(bool, String)> {
    let mut answers = Vec::new();
    for credential in credentials() {
        let answer = s.decide("front", credential).await;
        answers.push((answer["allowed"] == true, answer["reason"].as_str().unwrap_or_default().to_owned()));
    }
    answers
}

async fn backups_restore_every_decision(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    small_world(&s).await;
    s.ok("/api/v1/people/alice/credentials", json!({"kind": "pin", "pin": "4711"}), 201).await;
    s.ok("/api/v1/people", json!({"id": "bob", "name": "Bob"}), 201).await;
    s.ok("/api/v1/people/bob/credentials", card("0B0B0B02", None), 201).await;
    s.ok("/api/v1/grants", json!({"person_id": "bob", "doors": ["front"]}), 201).await;
    let at_backup = decisions(&s).await;
    assert_eq!(at_backup.iter().filter(|(allowed, _)| *allowed).count(), 3, "{at_backup:?}");

    let backup = db.dir.join(if b == Backend::Sqlite { "backup.tar" } else { "dump.sql" });
    let backup_path = backup.display().to_string();
    match b {
        Backend::Sqlite => {
            let out = run(&db, &["backup", &backup_path]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        Backend::Postgres => tool("pg_dump", &["--no-owner", "-f", &backup_path, "-d", &db.url]),
    }

    // Things change after the backup: Alice goes, Carol comes.
    assert_eq!(s.delete("/api/v1/people/alice").await.0, 204);
    s.ok("/api/v1/people", json!({"id": "carol", "name": "Carol"}), 201).await;
    s.ok("/api/v1/people/carol/credentials", card("0C0C0C03", None), 201).await;
    s.ok("/api/v1/grants", json!({"person_id": "carol", "doors": ["front"]}), 201).await;
    assert_ne!(decisions(&s).await, at_backup);
    s.terminate();

    let restored_db = match b {
        Backend::Sqlite => {
            let out = run(&db, &["restore", &backup_path]);
            assert!(!out.status.success(), "a restore over a database without --replace");
            assert!(String::from_utf8_lossy(&out.stderr).contains("--replace"));
            let out = run(&db, &["restore", "--replace", &backup_path]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            db
        }
        Backend::Postgres => {
            let fresh = Database::new(Backend::Postgres);
            tool("psql", &["-q", "-v", "ON_ERROR_STOP=1", "-d", &fresh.url, "-f", &backup_path]);
            for key in ["lintel.key", "lintel.signing.key"] {
                std::fs::copy(db.dir.join(key), fresh.dir.join(key)).expect("the key files are copied");
            }
            fresh
        }
    };
    let s = Server::start(&restored_db);
    assert_eq!(decisions(&s).await, at_backup, "the decisions of the time of the backup");
    s.terminate();

    if b == Backend::Sqlite {
        refuses_a_backup_with_another_key(&backup);
    }
}

/// The archive's key replaced by another: restoring it would make every PIN unknown.
fn refuses_a_backup_with_another_key(backup: &Path) {
    let elsewhere = Database::new(Backend::Sqlite);
    let unpacked = elsewhere.dir.join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    tool("tar", &["-xf", &backup.display().to_string(), "-C", &unpacked.display().to_string()]);
    std::fs::write(unpacked.join("lintel.key"), format!("{}\n", "cd".repeat(32))).unwrap();
    let tampered = elsewhere.dir.join("tampered.tar").display().to_string();
    let files = ["lintel.db", "lintel.key", "lintel.signing.key"];
    tool("tar", &[&["-cf", &tampered, "-C", &unpacked.display().to_string()][..], &files[..]].concat());
    let out = run(&elsewhere, &["restore", &tampered]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("not its database's"), "{err}");
    assert!(!elsewhere.dir.join("lintel.db").exists() && !elsewhere.dir.join("lintel.key").exists());
}

crate::on_both_backends!(backups_restore_every_decision);
