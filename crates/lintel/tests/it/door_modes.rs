//! Door modes end to end, on the server's faked clock: a lobby's unlock schedule holds a
//! fake Shelly on at 08:00 and releases it at 18:00, a restart tells it again, holidays
//! keep it secure, an operator's hold and its end, lockdown over a hold; the reference
//! controller over MQTT gets `hold` commands, and again when it reconnects.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Europe::Berlin;
use serde_json::{Value, json};

use crate::doors::FakeDevice;
use crate::harness::{Backend, Database, FakeClock, Server, card};
use crate::mqtt::{Broker, Controller, lintel_key, serve, world};
use crate::roles::{call_as, create_token, wait_for_token};

/// Local time in Berlin (Monday 4 January 2027 is a weekday).
fn berlin(day: u32, hour: u32, minute: u32, second: u32) -> DateTime<Utc> {
    Berlin.with_ymd_and_hms(2027, 1, day, hour, minute, second).unwrap().with_timezone(&Utc)
}

fn office_hours() -> Value {
    json!({"tz": "Europe/Berlin", "rules": [{"weekdays": ["mon", "tue", "wed", "thu", "fri"], "from": "08:00", "to": "18:00"}]})
}

/// What the relay was told, in order: `true` held on, `false` off (openings are left out).
fn holds(relay: &FakeDevice) -> Vec<bool> {
    relay
        .seen()
        .iter()
        .map(|s| s.json())
        .filter(|body| body.get("toggle_after").is_none())
        .map(|body| body["on"].as_bool().expect("on"))
        .collect()
}

async fn wait_for_holds(relay: &FakeDevice, wanted: &[bool]) {
    for _ in 0..100 {
        if holds(relay) == wanted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the relay was told {:?}, not {wanted:?}", holds(relay));
}

async fn mode(s: &Server, door: &str) -> String {
    let (status, body) = s.get(&format!("/api/v1/doors/{door}")).await;
    assert_eq!(status, 200, "{body}");
    body["state"]["mode"].as_str().expect("a mode").to_owned()
}

async fn wait_for_mode(s: &Server, door: &str, wanted: &str) {
    for _ in 0..100 {
        if mode(s, door).await == wanted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("door {door} is {}, not {wanted}", mode(s, door).await);
}

async fn a_lobby_follows_its_schedule_holidays_and_holds(b: Backend) {
    let db = Database::new(b);
    let clock = FakeClock::new(&db);
    clock.set_to(berlin(4, 7, 59, 50)).await;
    let s = Server::start_with(&db, &clock.env());
    let relay = FakeDevice::shelly_gen2().await;
    let driver = json!({"kind": "shelly", "url": relay.url, "generation": 2});
    s.ok(
        "/api/v1/doors",
        json!({"id": "lobby", "name": "Lobby", "driver": driver, "unlock_schedule": office_hours()}),
        201,
    )
    .await;

    // Before 08:00 the relay is told to hold nothing (a restart may have left it on).
    wait_for_holds(&relay, &[false]).await;
    assert_eq!(mode(&s, "lobby").await, "secure");

    clock.set_to(berlin(4, 8, 0, 1)).await;
    wait_for_holds(&relay, &[false, true]).await;
    wait_for_mode(&s, "lobby", "unlocked").await;
    let (_, events) = s.get("/api/v1/events?kind=door.mode_changed").await;
    let changes: Vec<_> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["data"]["to"].clone(), e["data"]["why"].clone()))
        .collect();
    assert_eq!(changes, vec![(json!("unlocked"), json!("schedule"))], "{events}");

    // An opening meanwhile leaves the hold alone (a timed one would end it).
    let (status, opened) = s.post("/api/v1/doors/lobby/open", json!({})).await;
    assert_eq!((status, &opened["opened"]), (200, &json!(true)), "{opened}");
    assert!(relay.seen().iter().all(|seen| seen.json().get("toggle_after").is_none()), "{:?}", relay.seen());

    // A restart tells the relay again what it should do now.
    s.kill();
    let s = Server::start_with(&db, &clock.env());
    wait_for_holds(&relay, &[false, true, true]).await;
    assert_eq!(mode(&s, "lobby").await, "unlocked");

    clock.set_to(berlin(4, 18, 0, 1)).await;
    wait_for_holds(&relay, &[false, true, true, false]).await;
    wait_for_mode(&s, "lobby", "secure").await;

    // A holiday keeps Tuesday secure.
    let (status, holiday) =
        s.post("/api/v1/sites/main/holidays", json!({"name": "Closed", "from": "2027-01-05"})).await;
    assert_eq!(status, 201, "{holiday}");
    clock.set_to(berlin(5, 9, 0, 0)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(holds(&relay), [false, true, true, false]);
    assert_eq!(mode(&s, "lobby").await, "secure");

    // An operator holds it unlocked for the delivery, then ends the hold early.
    let until = (berlin(5, 10, 0, 0)).to_rfc3339();
    let (status, door) = s.post("/api/v1/doors/lobby/hold", json!({"state": "unlocked", "until": until})).await;
    assert_eq!(status, 200, "{door}");
    assert_eq!(door["state"]["hold"]["state"], "unlocked");
    assert_eq!(door["state"]["hold"]["by"], "token:environment");
    wait_for_holds(&relay, &[false, true, true, false, true]).await;
    wait_for_mode(&s, "lobby", "unlocked").await;
    // Lockdown wins over the hold, and ends it: lifting lockdown does not open the door.
    s.ok("/api/v1/lockdown", json!({"doors": ["lobby"]}), 200).await;
    wait_for_holds(&relay, &[false, true, true, false, true, false]).await;
    assert_eq!(mode(&s, "lobby").await, "lockdown");
    assert!(s.get("/api/v1/doors/lobby").await.1["state"].get("hold").is_none());
    s.ok("/api/v1/lockdown/lift", json!({"doors": ["lobby"]}), 200).await;
    wait_for_mode(&s, "lobby", "secure").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(holds(&relay), [false, true, true, false, true, false]);
    // Held again, then ended early.
    let until = (berlin(5, 10, 0, 0)).to_rfc3339();
    s.ok("/api/v1/doors/lobby/hold", json!({"state": "unlocked", "until": until}), 200).await;
    wait_for_holds(&relay, &[false, true, true, false, true, false, true]).await;
    // While held, its driver stays (the old relay would never be told to let go).
    let other = json!({"driver": {"kind": "shelly", "url": "http://127.0.0.1:9", "generation": 2}});
    assert_eq!(s.call(reqwest::Method::PATCH, "/api/v1/doors/lobby", Some(other)).await.0, 409);
    assert_eq!(s.call(reqwest::Method::DELETE, "/api/v1/doors/lobby", None).await.0, 409);
    let (status, door) = s.call(reqwest::Method::DELETE, "/api/v1/doors/lobby/hold", None).await;
    assert_eq!(status, 200, "{door}");
    assert!(door["state"].get("hold").is_none(), "{door}");
    wait_for_holds(&relay, &[false, true, true, false, true, false, true, false]).await;
    wait_for_mode(&s, "lobby", "secure").await;

    // A hold that runs out ends by itself, recorded.
    let until = (berlin(5, 9, 30, 0)).to_rfc3339();
    s.ok("/api/v1/doors/lobby/hold", json!({"state": "unlocked", "until": until}), 200).await;
    wait_for_mode(&s, "lobby", "unlocked").await;
    clock.set_to(berlin(5, 9, 30, 1)).await;
    wait_for_mode(&s, "lobby", "secure").await;
    let (_, ended) = s.get("/api/v1/events?kind=door.hold_ended").await;
    assert_eq!(ended["items"].as_array().unwrap().iter().filter(|e| e["data"]["lapsed"] == true).count(), 1, "{ended}");
}

async fn bad_modes_and_holidays_are_refused_and_change_nothing(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let http = json!({"kind": "http", "url": "http://127.0.0.1:9/open"});
    let before = s.get("/api/v1/doors").await.1;
    let rules = office_hours()["rules"].clone();
    for (door, status) in [
        // A pulse cannot hold a door.
        (json!({"id": "gate", "name": "Gate", "driver": http, "unlock_schedule": office_hours()}), 422),
        (json!({"id": "gate", "name": "Gate", "driver": http, "egress": true}), 422),
        (json!({"id": "gate", "name": "Gate", "unlock_schedule": {"tz": "Mars/Olympus", "rules": []}}), 422),
        (
            json!({"id": "gate", "name": "Gate", "unlock_schedule": {"tz": "UTC", "rules": rules, "first_to_arrive_from": "25:00"}}),
            422,
        ),
        (
            json!({"id": "gate", "name": "Gate", "unlock_schedule": {"tz": "UTC", "rules": rules, "first_to_arrive_from": "07:00", "first_to_arrive_group": "nobody"}}),
            404,
        ),
        (json!({"id": "gate", "name": "Gate", "unlock_schedule": {"tz": "UTC", "rules": rules, "extra": 1}}), 422),
        (json!({"id": "gate", "name": "Gate", "unlock_schedule": {"tz": "UTC", "rules": []}}), 422),
    ] {
        let (got, body) = s.post("/api/v1/doors", door.clone()).await;
        assert_eq!(got, status, "{door}: {body}");
    }
    assert_eq!(s.get("/api/v1/doors").await.1, before);

    s.ok("/api/v1/doors", json!({"id": "gate", "name": "Gate", "driver": http}), 201).await;
    let (status, _) =
        s.call(reqwest::Method::PATCH, "/api/v1/doors/gate", Some(json!({"unlock_schedule": office_hours()}))).await;
    assert_eq!(status, 422);
    let soon = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (status, _) = s.post("/api/v1/doors/gate/hold", json!({"state": "unlocked", "until": soon})).await;
    assert_eq!(status, 422, "an http driver cannot hold");
    s.ok("/api/v1/doors", json!({"id": "front", "name": "Front"}), 201).await;
    let past = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let far = (Utc::now() + chrono::Duration::days(8)).to_rfc3339();
    for (path, body, status) in [
        ("/api/v1/doors/front/hold", json!({"state": "unlocked", "until": past}), 422),
        ("/api/v1/doors/front/hold", json!({"state": "unlocked", "until": far}), 422),
        ("/api/v1/doors/front/hold", json!({"state": "open", "until": soon}), 422),
        ("/api/v1/doors/nowhere/hold", json!({"state": "unlocked", "until": soon}), 404),
    ] {
        let (got, answer) = s.post(path, body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
    }
    assert!(s.get("/api/v1/doors/front").await.1["state"].get("hold").is_none());

    // Holidays: overlapping ones and what is not a calendar are refused, all or none.
    s.ok("/api/v1/sites/main/holidays", json!({"name": "Christmas", "from": "2026-12-24", "to": "2026-12-26"}), 201)
        .await;
    for (body, status) in [
        (json!({"name": "Boxing Day", "from": "2026-12-26"}), 409),
        (json!({"name": "Backwards", "from": "2027-01-02", "to": "2027-01-01"}), 422),
        (json!({"name": "", "from": "2027-01-02"}), 422),
        (json!({"name": "Bad date", "from": "2027-02-30"}), 422),
    ] {
        let (got, answer) = s.post("/api/v1/sites/main/holidays", body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
    }
    let (got, _) = s.post("/api/v1/sites/nowhere/holidays", json!({"name": "X", "from": "2027-01-02"})).await;
    assert_eq!(got, 404);

    let calendar = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n\
        BEGIN:VEVENT\r\nUID:ny-2027\r\nDTSTART;VALUE=DATE:20270101\r\nDTEND;VALUE=DATE:20270102\r\nSUMMARY:New Year\r\nEND:VEVENT\r\n\
        BEGIN:VEVENT\r\nUID:may-2027\r\nDTSTART;VALUE=DATE:20270501\r\nSUMMARY:Labour Day\r\nEND:VEVENT\r\n\
        END:VCALENDAR\r\n";
    let import = |body: &'static str, content_type: &'static str| {
        let client = reqwest::Client::new();
        let url = format!("{}/api/v1/sites/main/holidays/import", s.base);
        async move {
            let response = client
                .post(url)
                .bearer_auth(crate::harness::ADMIN)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    assert_eq!(import(calendar, "application/json").await.0, 415);
    assert_eq!(import("this is not a calendar", "text/calendar").await.0, 422);
    let overlapping = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n\
        BEGIN:VEVENT\r\nUID:a\r\nDTSTART;VALUE=DATE:20270601\r\nSUMMARY:Fine\r\nEND:VEVENT\r\n\
        BEGIN:VEVENT\r\nUID:b\r\nDTSTART;VALUE=DATE:20261225\r\nSUMMARY:Clash\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    assert_eq!(import(overlapping, "text/calendar").await.0, 409);
    assert_eq!(
        s.get("/api/v1/sites/main/holidays").await.1.as_array().unwrap().len(),
        1,
        "nothing of a refused calendar"
    );

    let (status, report) = import(calendar, "text/calendar; charset=utf-8").await;
    assert_eq!((status, report), (200, json!({"added": 2, "unchanged": 0})));
    let (status, report) = import(calendar, "text/calendar").await;
    assert_eq!((status, report), (200, json!({"added": 0, "unchanged": 2})), "a calendar loaded again adds nothing");
    let (_, listed) = s.get("/api/v1/sites/main/holidays").await;
    let days: Vec<_> = listed.as_array().unwrap().iter().map(|h| (h["from"].clone(), h["to"].clone())).collect();
    assert_eq!(
        days,
        vec![
            (json!("2026-12-24"), json!("2026-12-26")),
            (json!("2027-01-01"), json!("2027-01-01")),
            (json!("2027-05-01"), json!("2027-05-01"))
        ]
    );
    let id = listed[0]["id"].as_str().unwrap();
    let (status, _) = s.call(reqwest::Method::DELETE, &format!("/api/v1/sites/main/holidays/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, _) = s.call(reqwest::Method::DELETE, &format!("/api/v1/sites/main/holidays/{id}"), None).await;
    assert_eq!(status, 404);
}

/// First to arrive: the hours wait for the day's first allowed entry of staff.
async fn first_to_arrive_waits_for_staff_and_the_last_to_leave_ends_it(b: Backend) {
    let db = Database::new(b);
    let clock = FakeClock::new(&db);
    clock.set_to(berlin(4, 8, 0, 5)).await;
    let s = Server::start_with(&db, &clock.env());
    let mut hours = office_hours();
    hours["first_to_arrive_from"] = json!("07:00");
    hours["first_to_arrive_group"] = json!("staff");
    hours["last_to_leave_from"] = json!("16:00");
    s.ok("/api/v1/groups", json!({"id": "staff", "name": "Staff"}), 201).await;
    s.ok("/api/v1/doors", json!({"id": "lobby", "name": "Lobby", "unlock_schedule": hours}), 201).await;
    for (person, uid) in [("sam", "0A000001"), ("max", "0B000002")] {
        s.ok("/api/v1/people", json!({"id": person, "name": person}), 201).await;
        s.ok(&format!("/api/v1/people/{person}/credentials"), card(uid, None), 201).await;
        s.ok("/api/v1/grants", json!({"person_id": person, "doors": ["lobby"]}), 201).await;
    }
    assert_eq!(s.put("/api/v1/groups/staff/members/sam").await.0, 204);

    // In the hours, but no one has come: secure. A member who is not staff does not count.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(mode(&s, "lobby").await, "secure");
    clock.set_to(berlin(4, 8, 20, 0)).await;
    assert_eq!(s.decide("lobby", card("0B000002", None)).await["allowed"], true);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(mode(&s, "lobby").await, "secure");

    clock.set_to(berlin(4, 8, 30, 0)).await;
    assert_eq!(s.decide("lobby", card("0A000001", None)).await["allowed"], true);
    wait_for_mode(&s, "lobby", "unlocked").await;
    // The last to leave: an exit request before 16:00 changes nothing; after, the door
    // locks for the rest of the day.
    clock.set_to(berlin(4, 15, 0, 0)).await;
    s.ok("/api/v1/doors/lobby/inputs", json!({"input": "exit", "state": "active"}), 200).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(mode(&s, "lobby").await, "unlocked");
    clock.set_to(berlin(4, 16, 30, 0)).await;
    s.ok("/api/v1/doors/lobby/inputs", json!({"input": "exit", "state": "active"}), 200).await;
    wait_for_mode(&s, "lobby", "secure").await;
    // The next day starts over.
    clock.set_to(berlin(5, 8, 30, 0)).await;
    wait_for_mode(&s, "lobby", "secure").await;
}

/// A building system's token raises an emergency release: the exit-route door is held
/// open over lockdown until an operator resets it; the token may do nothing else.
async fn an_emergency_opens_exit_doors_over_lockdown_until_reset(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let relay = FakeDevice::shelly_gen2().await;
    let driver = json!({"kind": "shelly", "url": relay.url, "generation": 2});
    s.ok("/api/v1/doors", json!({"id": "exit", "name": "Fire exit", "driver": driver, "egress": true}), 201).await;
    s.ok("/api/v1/doors", json!({"id": "office", "name": "Office"}), 201).await;
    wait_for_holds(&relay, &[false]).await;
    s.ok("/api/v1/lockdown", json!({"site": "main"}), 200).await;
    assert_eq!(mode(&s, "exit").await, "lockdown");

    let panel = create_token(&db, "building");
    wait_for_token(&s, &panel).await;
    let raise = |token: String, site: &'static str| {
        let s = &s;
        async move {
            let body = Some(json!({"why": "fire panel zone 3"}));
            call_as(s, &token, reqwest::Method::POST, &format!("/api/v1/sites/{site}/emergency"), body).await
        }
    };
    assert_eq!(raise(panel.clone(), "nowhere").await.0, 404);
    let (status, site) = raise(panel.clone(), "main").await;
    assert_eq!(status, 200, "{site}");
    assert!(site["emergency_by"].as_str().is_some_and(|by| by.starts_with("token:")), "{site}");
    wait_for_holds(&relay, &[false, true]).await;
    wait_for_mode(&s, "exit", "egress_open").await;
    assert_eq!(mode(&s, "office").await, "lockdown", "only exit-route doors are released");
    // Raised again: nothing changes, nothing more is recorded.
    assert_eq!(raise(panel.clone(), "main").await.0, 200);
    let started = s.all_events("kind=site.emergency_started").await;
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(started[0]["data"]["why"], "fire panel zone 3");

    // The building system may not reset it, nor do anything else.
    for (method, path) in [
        (reqwest::Method::DELETE, "/api/v1/sites/main/emergency"),
        (reqwest::Method::GET, "/api/v1/doors"),
        (reqwest::Method::POST, "/api/v1/lockdown/lift"),
    ] {
        let body = (method == reqwest::Method::POST).then(|| json!({"site": "main"}));
        assert_eq!(call_as(&s, &panel, method.clone(), path, body).await.0, 403, "{method} {path}");
    }
    let (status, site) = s.call(reqwest::Method::DELETE, "/api/v1/sites/main/emergency", None).await;
    assert_eq!(status, 200, "{site}");
    assert!(site.get("emergency_by").is_none(), "{site}");
    wait_for_holds(&relay, &[false, true, false]).await;
    wait_for_mode(&s, "exit", "lockdown").await;
}

/// The reference controller is told `hold` over MQTT, and told again when it reconnects.
async fn a_controller_is_told_to_hold_and_again_after_a_restart(b: Backend) {
    let db = Database::new(b);
    let broker = Broker::start(&db.dir);
    let s = serve(&db, &broker, "lintel-modes");
    world(&s).await;
    let key = lintel_key(&db);
    let mut controller = Controller::start(&broker, &key, &db.dir.join("ctl"));
    controller.list_version(1);
    let until = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    s.ok("/api/v1/doors/front/hold", json!({"state": "unlocked", "until": until}), 200).await;
    let is_hold =
        |on: bool| move |e: &Value| e["event"] == "command" && e["action"] == json!({"action": "hold", "on": on});
    controller.wait_for("a hold command", is_hold(true));
    wait_for_mode(&s, "front", "unlocked").await;

    // A controller that restarts is told again.
    controller.stop();
    controller = Controller::start(&broker, &key, &db.dir.join("ctl"));
    controller.wait_for("the hold again after reconnecting", is_hold(true));

    s.call(reqwest::Method::DELETE, "/api/v1/doors/front/hold", None).await;
    controller.wait_for("the hold's end", is_hold(false));
    wait_for_mode(&s, "front", "secure").await;
}

crate::on_both_backends!(
    a_lobby_follows_its_schedule_holidays_and_holds,
    bad_modes_and_holidays_are_refused_and_change_nothing,
    first_to_arrive_waits_for_staff_and_the_last_to_leave_ends_it,
    an_emergency_opens_exit_doors_over_lockdown_until_reset,
    a_controller_is_told_to_hold_and_again_after_a_restart,
);
