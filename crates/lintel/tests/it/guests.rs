//! Guest passes: a link mailed to a visitor opens the chosen doors in its window only,
//! stops at once when revoked, and the visitor is removed when the pass is over.

use std::time::Duration;

use serde_json::json;

use crate::harness::{Backend, Database, Server, first_mail, lintel, small_world, smtp_sink};

async fn a_guest_pass_opens_its_doors_until_revoked(b: Backend) {
    let (smtp, mail) = smtp_sink().await;
    let db = Database::new(b);
    let s = Server::start_with(
        &db,
        &[
            ("LINTEL_SMTP_URL", &smtp),
            ("LINTEL_SMTP_FROM", "lintel <doors@example.org>"),
            ("LINTEL_PUBLIC_URL", "https://doors.example.org"),
        ],
    );
    small_world(&s).await;
    s.ok("/api/v1/doors", json!({"id": "lab", "name": "Lab"}), 201).await;
    s.ok("/api/v1/doors", json!({"id": "office", "name": "Office"}), 201).await;
    let now = chrono::Utc::now();
    let hours = |h: i64| (now + chrono::Duration::hours(h)).to_rfc3339();

    for (body, why) in [
        (json!({"name": "Gus", "doors": [], "valid_until": hours(2)}), "no doors"),
        (json!({"name": "Gus", "doors": ["nowhere"], "valid_until": hours(2)}), "an unknown door"),
        (json!({"name": "Gus", "doors": ["front"], "valid_until": hours(-1)}), "over already"),
        (json!({"name": "Gus", "doors": ["front"], "valid_from": hours(3), "valid_until": hours(2)}), "backwards"),
        (json!({"name": "Gus", "doors": ["front"], "valid_until": hours(24 * 400)}), "too long"),
        (json!({"name": "Gus", "doors": ["front"], "valid_until": hours(2), "send": true}), "send without email"),
        (json!({"name": "", "doors": ["front"], "valid_until": hours(2)}), "no name"),
    ] {
        let (status, problem) = s.post("/api/v1/guests", body).await;
        assert_eq!(status, 422, "{why}: {problem}");
    }
    assert_eq!(s.get("/api/v1/guests").await.1, json!([]), "a refused pass leaves nothing behind");

    let issued = s
        .ok(
            "/api/v1/guests",
            json!({"name": "Gus Guest", "email": "gus@example.org", "doors": ["front", "lab"], "valid_until": hours(2)}),
            201,
        )
        .await;
    assert_eq!((issued["state"].as_str(), issued["emailed"].as_bool()), (Some("active"), Some(true)), "{issued}");
    let secret = issued["secret"].as_str().expect("the secret, once").to_owned();
    let link = format!("https://doors.example.org/visit#doors=front,lab&secret={secret}");
    assert_eq!(issued["link"], link.as_str());
    let message = first_mail(&mail).await;
    assert!(message.contains("gus@example.org") && message.contains("Front door and Lab"), "{message}");
    assert!(message.contains(&link), "the mail carries the link: {message}");

    let open = |door: &'static str| s.client.post(format!("{}/open/{door}", s.base)).bearer_auth(&secret).send();
    assert_eq!(open("front").await.unwrap().status(), 200, "the link opens its doors");
    assert_eq!(open("lab").await.unwrap().status(), 200);
    assert_eq!(open("office").await.unwrap().status(), 403, "and no other");

    let path = format!("/api/v1/guests/{}", issued["id"].as_str().unwrap());
    let (_, shown) = s.get(&path).await;
    assert!(shown.get("secret").is_none() && shown.get("link").is_none(), "shown once: {shown}");
    assert_eq!(shown["created_by"], "token:environment");

    // Not yet valid: a pass for tomorrow opens nothing today.
    let later = s
        .ok(
            "/api/v1/guests",
            json!({"name": "Tom", "doors": ["front"], "valid_from": hours(20), "valid_until": hours(22)}),
            201,
        )
        .await;
    assert_eq!((later["state"].as_str(), later["emailed"].as_bool()), (Some("upcoming"), Some(false)));
    let tomorrow = later["secret"].as_str().unwrap().to_owned();
    let refused = s.client.post(format!("{}/open/front", s.base)).bearer_auth(&tomorrow).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    let open_now = s.get("/api/v1/guests?open=true").await.1;
    assert_eq!(open_now.as_array().unwrap().len(), 2, "{open_now}");

    // Revoked: the link stops at once; the pass stays on record, by whom.
    let (status, revoked) = s.delete(&path).await;
    assert_eq!((status, revoked["state"].as_str()), (200, Some("revoked")), "{revoked}");
    assert_eq!(revoked["revoked_by"], "token:environment");
    assert_eq!(open("front").await.unwrap().status(), 403, "a revoked pass opens nothing");
    assert_eq!(s.get(&format!("/api/v1/people/{}", issued["person_id"].as_str().unwrap())).await.0, 404);
    assert_eq!(s.delete(&path).await.1["revoked_at"], revoked["revoked_at"], "revoking again changes nothing");
    assert_eq!(s.delete("/api/v1/guests/gp_nothing").await.0, 404);
    let trail = s.get("/api/v1/audit?kind=guest_pass.revoked").await.1;
    assert_eq!(trail["items"][0]["actor"], "token:environment", "{trail}");
    let all = s.get("/api/v1/guests").await.1;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let open_now = s.get("/api/v1/guests?open=true").await.1;
    assert_eq!(open_now.as_array().unwrap().len(), 1, "{open_now}");

    // The CLI issues, lists and revokes the same passes, as `cli`.
    let run = |args: &[&str]| {
        let out = lintel().args(args).args(["--database-url", &db.url]).current_dir(&db.dir).output().unwrap();
        assert!(out.status.success(), "lintel {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let until = hours(3);
    let link = tokio::task::block_in_place(|| {
        run(&["guests", "add", "--name", "Cleo", "--door", "office", "--until", &until, "--no-mail"])
    });
    // This CLI has no public_url: it prints the bare secret.
    let secret = link.split("secret=").last().unwrap_or_default().to_owned();
    assert!(secret.starts_with("lsk_"), "{link}");
    // The server takes up the CLI's write within its follow interval.
    let mut status = 0;
    for _ in 0..50 {
        let opened = s.client.post(format!("{}/open/office", s.base)).bearer_auth(&secret).send().await.unwrap();
        status = opened.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "the CLI's pass opens its door");
    let listed = tokio::task::block_in_place(|| run(&["guests", "list", "--open"]));
    let id = listed.lines().find(|l| l.contains("Cleo")).and_then(|l| l.split('\t').next()).expect("listed");
    let id = id.to_owned();
    tokio::task::block_in_place(|| run(&["guests", "revoke", &id]));
    let pass = s.get(&format!("/api/v1/guests/{id}")).await.1;
    assert_eq!((pass["state"].as_str(), pass["created_by"].as_str()), (Some("revoked"), Some("cli")), "{pass}");
    assert_eq!(mail.lock().unwrap().len(), 1, "--no-mail mailed nothing");
}

async fn a_pass_that_is_over_takes_its_visitor_away(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    small_world(&s).await;
    let until = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let pass = json!({"name": "Brief", "email": "brief@example.org", "doors": ["front"], "valid_until": until});
    let mut mailed = pass.clone();
    mailed["send"] = json!(true);
    let (status, refused) = s.post("/api/v1/guests", mailed).await;
    assert_eq!(status, 422, "mailing needs [smtp]: {refused}");
    let issued = s.ok("/api/v1/guests", pass, 201).await;
    assert!(issued.get("link").is_none(), "no link without public_url: {issued}");
    assert_eq!(issued["emailed"], false, "without [smtp], an email is kept but nothing is sent: {issued}");
    let person = format!("/api/v1/people/{}", issued["person_id"].as_str().unwrap());
    assert_eq!(s.get(&person).await.0, 200);
    // The worker looks every 30 s.
    for _ in 0..450 {
        if s.get(&person).await.0 == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.get(&person).await.0, 404, "the visitor is removed once the pass is over");
    let pass = s.get(&format!("/api/v1/guests/{}", issued["id"].as_str().unwrap())).await.1;
    assert_eq!(pass["state"], "ended", "{pass}");
}

crate::on_both_backends!(a_guest_pass_opens_its_doors_until_revoked, a_pass_that_is_over_takes_its_visitor_away);
