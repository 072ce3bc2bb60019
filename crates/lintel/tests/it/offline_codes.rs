//! Backup codes when lintel is down: two reference controllers (`lintel controller-sim`)
//! decide keypad entries from their signed lists with lintel stopped, each refuses a code
//! it let in before, and on upload lintel marks the codes used everywhere and reports the
//! one code let in at both controllers as a conflict, once.

use std::path::Path;

use serde_json::{Value, json};

use crate::harness::{Backend, Database, Server, lintel};
use crate::mqtt::{Broker, Controller, lintel_key, serve};

/// Doors `front` on ctl-1 and `back` on ctl-2; three backup codes that open both (issued
/// for `front`, their holder granted `back` too), as a keypad types them.
async fn world(s: &Server, db: &Database) -> Vec<String> {
    for (door, controller) in [("front", "ctl-1"), ("back", "ctl-2")] {
        let driver = json!({"kind": "mqtt", "controller": controller});
        s.ok("/api/v1/doors", json!({"id": door, "name": door, "driver": driver}), 201).await;
    }
    let out = lintel()
        .args(["backup-codes", "--door", "front", "--count", "3", "--database-url", &db.url])
        .current_dir(&db.dir)
        .output()
        .expect("lintel runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    s.ok("/api/v1/grants", json!({"person_id": "backup-front", "doors": ["back"]}), 201).await;
    let codes: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(|c| c.replace('-', "")).collect();
    assert_eq!(codes.len(), 3, "{codes:?}");
    assert!(codes.iter().all(|c| c.len() == 20 && c.bytes().all(|b| b.is_ascii_digit())), "typeable: {codes:?}");
    codes
}

fn start(id: &str, broker: &Broker, key: &str, dir: &Path) -> Controller {
    Controller::start_as(id, broker, key, &dir.join(id))
}

fn with_codes(ctl: &Controller, codes: u64) -> Value {
    ctl.wait_for(&format!("a list of {codes} backup codes"), |l| l["event"] == "list" && l["codes"] == codes)
}

fn lintel_down(ctl: &Controller) {
    ctl.wait_for("lintel's Last Will", |l| l["event"] == "lintel" && l["online"] == false);
}

fn verdict(d: &Value) -> (&str, bool, &str) {
    (d["source"].as_str().unwrap_or_default(), d["allowed"] == true, d["reason"].as_str().unwrap_or_default())
}

async fn backup_codes_work_while_lintel_is_down(backend: Backend) {
    let db = Database::new(backend);
    let broker = Broker::start(&db.dir);
    let s = serve(&db, &broker, "lintel-it");
    let codes = world(&s, &db).await;
    let key = lintel_key(&db);
    let (mut one, mut two) = (start("ctl-1", &broker, &key, &db.dir), start("ctl-2", &broker, &key, &db.dir));
    with_codes(&one, 3);
    with_codes(&two, 3);

    // Online, the keypad's digits are decided by lintel, and a code used there leaves
    // every list.
    let online = one.key("front", &codes[0]);
    assert_eq!(verdict(&online), ("lintel", true, "granted"), "{online}");
    with_codes(&one, 2);
    with_codes(&two, 2);

    // Stopped cleanly, so that the next start takes the MQTT link at once (a killed node's
    // lease has to run out first); the controllers hear it from lintel's status either way.
    let (_, stopped) = s.terminate();
    assert!(stopped.success(), "{stopped:?}");
    lintel_down(&one);
    lintel_down(&two);
    let first = one.key("front", &codes[1]);
    assert_eq!(verdict(&first), ("offline", true, "granted"), "{first}");
    assert_eq!(first["actions"][0]["action"], "open", "{first}");
    let again = one.key("front", &codes[1]);
    assert_eq!(verdict(&again), ("offline", false, "credential_revoked"), "once per controller: {again}");
    let used_online = one.key("front", &codes[0]);
    assert_eq!(verdict(&used_online), ("offline", false, "unknown_credential"), "{used_online}");
    let pin = one.key("front", "1234");
    assert_eq!(verdict(&pin), ("offline", false, "unknown_credential"), "PINs need lintel: {pin}");
    // ctl-2 cannot know: the same code gets in there too, and another one once.
    let twice = two.key("back", &codes[1]);
    assert_eq!(verdict(&twice), ("offline", true, "granted"), "{twice}");
    assert_eq!(twice["backup_code"], first["backup_code"], "the same code");
    let other = two.key("back", &codes[2]);
    assert_eq!(verdict(&other), ("offline", true, "granted"), "{other}");
    let kept = std::fs::read(db.dir.join("ctl-2").join("ctl-2.json")).unwrap();
    assert!(!String::from_utf8_lossy(&kept).contains(&codes[1]), "typed digits are never kept");

    let s = serve(&db, &broker, "lintel-it");
    for ctl in [&one, &two] {
        ctl.wait_for("the upload acknowledged", |l| l["event"] == "uploaded" && l["pending"] == 0);
        with_codes(ctl, 0);
    }
    let (_, credentials) = s.get("/api/v1/people/backup-front/credentials").await;
    let statuses: Vec<&str> = credentials.as_array().unwrap().iter().map(|c| c["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["used"; 3], "used everywhere: {credentials}");

    // A controller that never heard the acknowledgement uploads again: nothing new.
    two.stop();
    std::fs::write(db.dir.join("ctl-2").join("ctl-2.json"), kept).unwrap();
    two = start("ctl-2", &broker, &key, &db.dir);
    two.wait_for("the second upload acknowledged", |l| l["event"] == "uploaded" && l["pending"] == 0);

    let conflicts = s.all_events("kind=backup_code.conflict").await;
    assert_eq!(conflicts.len(), 1, "reported once: {conflicts:#?}");
    let uses = conflicts[0]["data"]["uses"].as_array().unwrap();
    let places: Vec<(&str, &str)> =
        uses.iter().map(|u| (u["controller"].as_str().unwrap(), u["door"].as_str().unwrap())).collect();
    assert_eq!(places, [("ctl-1", "front"), ("ctl-2", "back")], "both, in the order they happened: {uses:?}");
    assert!(uses.iter().all(|u| u["offline"] == true && u["at"].is_string()), "{uses:?}");
    assert_eq!(conflicts[0]["credential_id"], first["backup_code"]);
    assert_eq!(conflicts[0]["person_id"], "backup-front");

    let decisions = s.all_events("kind=decision").await;
    let offline: Vec<&Value> = decisions.iter().filter(|e| e["data"]["offline"] == true).collect();
    assert_eq!(offline.len(), 6, "every offline entry once: {offline:#?}");
    let code_one: Vec<&&Value> =
        offline.iter().filter(|e| e["credential_id"] == first["backup_code"] && e["allowed"] == true).collect();
    assert_eq!(code_one.len(), 2, "both entries happened and are kept: {code_one:#?}");
    let marked: Vec<bool> = code_one.iter().map(|e| e["data"]["backup_code_conflict"] == true).collect();
    assert_eq!(marked, [false, true], "the second is marked");
    assert!(code_one.iter().all(|e| e["person_id"] == "backup-front" && e["data"]["credential_kind"] == "backup_code"));
    let typed = offline.iter().find(|e| e["data"]["credential_kind"] == "keypad").expect("the PIN typed offline");
    assert!(typed["credential_id"].is_null() && typed["data"].get("uid").is_none(), "{typed}");
    drop((one, two));
}

crate::on_both_backends!(backup_codes_work_while_lintel_is_down);
