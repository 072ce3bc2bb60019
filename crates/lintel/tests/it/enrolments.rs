//! Enrolling a card by tapping it: the next unknown card at the door becomes the
//! person's card, once, and a tap at another door does not count.

use serde_json::json;

use crate::harness::{Backend, Database, Server, small_world};

async fn the_next_unknown_card_at_the_door_becomes_the_persons(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    small_world(&s).await;
    s.ok("/api/v1/doors", json!({"id": "lab", "name": "Lab"}), 201).await;
    s.ok("/api/v1/people", json!({"id": "dan", "name": "Dan"}), 201).await;
    for (path, body, status) in [
        ("/api/v1/people/nobody/enrolments", json!({"door": "front"}), 404),
        ("/api/v1/people/dan/enrolments", json!({"door": "nowhere"}), 404),
        ("/api/v1/people/dan/enrolments", json!({"door": "front", "extra": 1}), 422),
    ] {
        let (got, problem) = s.post(path, body.clone()).await;
        assert_eq!(got, status, "{path} {body}: {problem}");
    }
    let started = s.ok("/api/v1/people/dan/enrolments", json!({"door": "front"}), 201).await;
    assert_eq!(started["state"], "waiting", "{started}");
    let path = format!("/api/v1/enrolments/{}", started["id"].as_str().unwrap());
    assert_eq!(s.get(&path).await.1["state"], "waiting");

    // A card unknown at another door does not count; a known card at this one neither.
    let tap = |uid: &str| json!({"kind": "card", "uid": uid});
    assert_eq!(s.decide("lab", tap("0A0A0A0A")).await["reason"], "unknown_credential");
    s.decide("front", json!({"kind": "card", "uid": "04A1B2C3", "revocation_code": "7"})).await;
    assert_eq!(s.get(&path).await.1["state"], "waiting");
    assert_eq!(s.decide("front", tap("0DDC0DE1")).await["reason"], "unknown_credential");
    let (status, enrolled) = s.get(&path).await;
    assert_eq!(
        (status, enrolled["state"].as_str(), enrolled["uid"].as_str()),
        (200, Some("enrolled"), Some("0DDC0DE1"))
    );
    // The card is Dan's now (he has no grant: refused as his, no longer unknown).
    let answer = s.decide("front", tap("0DDC0DE1")).await;
    assert_eq!((answer["reason"].as_str(), answer["person_id"].as_str()), (Some("no_grant"), Some("dan")), "{answer}");
    let cards = s.get("/api/v1/people/dan/credentials").await.1;
    assert_eq!(cards.as_array().unwrap().len(), 1, "issued once, however often it is looked at: {cards}");
    assert_eq!(s.get(&path).await.1, enrolled, "looking again changes nothing");
    // Recorded as the change of whoever started it.
    let trail = s.get("/api/v1/audit?kind=card.enrolled").await.1;
    assert_eq!(trail["items"][0]["actor"], "token:environment", "{trail}");
}

crate::on_both_backends!(the_next_unknown_card_at_the_door_becomes_the_persons);
