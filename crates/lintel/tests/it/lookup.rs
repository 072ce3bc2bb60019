//! The badge identity lookup (GroundControl-style): an operator-defined path with the raw
//! badge id in the query or a path segment, the conversion pipeline, imported badges and
//! lintel's own cards, basic auth, and bad ids answered 400.

use serde_json::{Value, json};

use crate::harness::{Backend, Database, Server, init, lintel, small_world, write_file};

fn import(db: &Database, file: &std::path::Path, extra: &[&str]) -> (i32, String) {
    init(db);
    let out = lintel()
        .args(["import", "--quiet", "--database-url", &db.url])
        .args(extra)
        .arg(file)
        .current_dir(&db.dir)
        .output()
        .expect("lintel import runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `GET` without lintel's admin token, optionally with basic auth.
async fn lookup(s: &Server, path: &str, auth: Option<(&str, &str)>) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = s.client.get(format!("{}{path}", s.base));
    if let Some((user, password)) = auth {
        req = req.basic_auth(user, Some(password));
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), headers)
}

/// The decimal of the reversed bytes of a hex id, as a badge system that stores it so would.
fn reversed_decimal(hex: &str) -> String {
    let bytes = hex::decode(hex).unwrap();
    let n = bytes.iter().rev().fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
    n.to_string()
}

async fn query_style_with_conversions_badges_and_cards(b: Backend) {
    let db = Database::new(b);
    let csv = format!(
        "badge,user,fullname,email,department\n\
         {},bob,Bob Builder,bob@example.org,Wood shop\n\
         {},carol,Carol,,\n",
        reversed_decimal("11223344"),
        reversed_decimal("0A0B0C0D0E0F10"),
    );
    let file = write_file(&db.dir, "badges.csv", &csv);
    let (code, out) = import(&db, &file, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("badges imported: 2"), "{out}");

    let s = Server::start_with(
        &db,
        &[
            ("LINTEL_LOOKUP_PATH_TEMPLATE", "/lookup?id=[DATA]"),
            ("LINTEL_LOOKUP_CONVERSIONS", "reverse_bytes,hex_to_decimal"),
            ("LINTEL_LOOKUP_ATTRIBUTES", "fullname,email,department"),
        ],
    );
    small_world(&s).await;

    // An imported badge, found through the conversions; extra columns as attributes.
    let (status, body, _) = lookup(&s, "/lookup?id=11223344", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"user": "bob", "fullname": "Bob Builder", "email": "bob@example.org", "department": "Wood shop"})
    );
    // Lower case and separators are the same id; empty columns are left out.
    let (status, body, _) = lookup(&s, "/lookup?id=0a:0b:0c:0d:0e:0f:10", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"user": "carol", "fullname": "Carol"}));

    // One of lintel's own cards (matched by the UID the reader sends).
    let (status, body, _) = lookup(&s, "/lookup?id=04a1b2c3", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"user": "alice", "fullname": "Alice", "email": "alice@example.org"}));

    // Unknown: 404 with a JSON body.
    let (status, body, headers) = lookup(&s, "/lookup?id=DEADBEEF", None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["status"], 404, "{body}");
    assert!(headers[reqwest::header::CONTENT_TYPE].to_str().unwrap().contains("json"));

    // Bad ids are the client's fault.
    let long = "A".repeat(66);
    for bad in ["/lookup?id=XYZ", "/lookup?id=", "/lookup", "/lookup?other=11223344", &format!("/lookup?id={long}")] {
        let (status, body, _) = lookup(&s, bad, None).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["status"], 400, "{bad}: {body}");
    }
    // Odd length cannot be byte-reversed: 400 too.
    let (status, body, _) = lookup(&s, "/lookup?id=ABC", None).await;
    assert_eq!(status, 400, "{body}");

    // lintel's own routes are untouched.
    assert_eq!(s.get("/healthz").await.0, 200);
    assert_eq!(s.get("/api/v1/people").await.0, 200);

    // A new export replaces the old one, and the running server answers from it at once.
    let file = write_file(
        &db.dir,
        "badges2.csv",
        &format!("badge,user,fullname\n{},dave,Dave\n{0},eve,Eve\n,nobody,\n", reversed_decimal("55667788")),
    );
    let (code, out) = import(&db, &file, &["--badges"]);
    assert_eq!(code, 1, "duplicates and empty badges are reported: {out}");
    assert!(out.contains("badges imported: 1 (replacing 2); 2 rejected"), "{out}");
    assert!(out.contains("line 3") && out.contains("also on line 2"), "{out}");
    assert_eq!(lookup(&s, "/lookup?id=11223344", None).await.0, 404);
    let (status, body, _) = lookup(&s, "/lookup?id=55667788", None).await;
    assert_eq!((status, body), (200, json!({"user": "dave", "fullname": "Dave"})));
}

async fn path_style_with_bit_slices_and_basic_auth(b: Backend) {
    let db = Database::new(b);
    // A 38-bit id: the badge system writes its first 19 and last 19 bits, each in decimal,
    // one after the other.
    let id: u64 = (12345 << 19) | 67890;
    let hex = format!("{id:010X}");
    let file = write_file(
        &db.dir,
        "export.csv",
        "Badge,User,Fullname,Email\n1234567890,P-1001,Frank,frank@example.org\n42,P-1002,Grace,\n",
    );
    assert_eq!(import(&db, &file, &[]).0, 0);
    let s = Server::start_with(
        &db,
        &[
            ("LINTEL_LOOKUP_PATH_TEMPLATE", "http://10.1.1.1/badges/[DATA]"),
            ("LINTEL_LOOKUP_CONVERSIONS", "width:38,bits:0:19+bits:19:19"),
            ("LINTEL_LOOKUP_USER_ATTRIBUTE", "email"),
            ("LINTEL_LOOKUP_ATTRIBUTES", "fullname,user"),
            ("LINTEL_LOOKUP_BASIC_AUTH", "groundcontrol:s3cret:with:colons"),
        ],
    );
    let path = format!("/badges/{hex}");
    let good = Some(("groundcontrol", "s3cret:with:colons"));

    // Without credentials, or with wrong ones: 401 and a Basic challenge.
    for auth in [None, Some(("groundcontrol", "wrong")), Some(("other", "s3cret:with:colons"))] {
        let (status, body, headers) = lookup(&s, &path, auth).await;
        assert_eq!(status, 401, "{auth:?}: {body}");
        let challenge = headers[reqwest::header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.starts_with("Basic"), "{challenge}");
    }
    // lintel's admin token is not the lookup's credential.
    assert_eq!(s.get(&path).await.0, 401);
    // A bad id without credentials learns nothing but 401.
    assert_eq!(lookup(&s, "/badges/nothex", None).await.0, 401);

    let (status, body, _) = lookup(&s, &path, good).await;
    assert_eq!(status, 200, "{body}");
    // `user` is the configured attribute (email); `user` asked as an attribute is not repeated.
    assert_eq!(body, json!({"user": "frank@example.org", "fullname": "Frank"}));

    // Found, but without the attribute answered as user: unknown.
    let grace = format!("{:010X}", (4u64 << 19) | 2);
    let (status, body, _) = lookup(&s, &format!("/badges/{grace}"), good).await;
    assert_eq!(status, 404, "{body}");
    let (status, body, _) = lookup(&s, "/badges/0000000001", good).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["status"], 404);

    // Not hex, too wide for 38 bits, too long: 400.
    for bad in ["/badges/nothex", "/badges/FFFFFFFFFF", &format!("/badges/{}", "0".repeat(70))] {
        let (status, body, _) = lookup(&s, bad, good).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    // The query form is not configured here.
    assert_eq!(lookup(&s, &format!("/lookup?id={hex}"), good).await.0, 404);

    // Guessing the password is slowed like guessing PINs: after a few wrong ones from this
    // address ([limits] free_failures, 5), even the right one waits.
    for _ in 0..5 {
        lookup(&s, &path, Some(("groundcontrol", "guess"))).await;
    }
    let (status, body, headers) = lookup(&s, &path, good).await;
    assert_eq!(status, 429, "{body}");
    assert!(headers.contains_key(reqwest::header::RETRY_AFTER));
}

/// The frame of a Wiegand 26 card (H10301) for a facility code and card number.
fn wiegand26(facility: u32, card: u32) -> String {
    let data = (facility << 16) | card;
    let even = ((data >> 12) & 0xFFF).count_ones() % 2;
    let odd = 1 - (data & 0xFFF).count_ones() % 2;
    format!("{:07X}", (even << 25) | (data << 1) | odd)
}

async fn wiegand_and_refused_templates(b: Backend) {
    let db = Database::new(b);
    let file = write_file(&db.dir, "wiegand.csv", "badge,user\n123:45678,henry\n");
    assert_eq!(import(&db, &file, &[]).0, 0);
    let s = Server::start_with(
        &db,
        &[("LINTEL_LOOKUP_PATH_TEMPLATE", "/gc/lookup?badge=[DATA]"), ("LINTEL_LOOKUP_CONVERSIONS", "wiegand26")],
    );
    let frame = wiegand26(123, 45678);
    let (status, body, _) = lookup(&s, &format!("/gc/lookup?badge={frame}"), None).await;
    assert_eq!((status, body), (200, json!({"user": "henry"})));
    // One bit flipped: the parity check fails, 400.
    let flipped = format!("{:07X}", u32::from_str_radix(&frame, 16).unwrap() ^ 1);
    let (status, body, _) = lookup(&s, &format!("/gc/lookup?badge={flipped}"), None).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("parity"), "{body}");
    s.kill();

    // Templates that would shadow lintel's routes, and unknown steps, stop the start.
    for (template, conversions) in
        [("/api/v1/lookup/[DATA]", ""), ("/hooks/[DATA]", ""), ("/ui?id=[DATA]", ""), ("/lookup/[DATA]", "rot13")]
    {
        let out = lintel()
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &db.url])
            .current_dir(&db.dir)
            .env("LINTEL_LOOKUP_PATH_TEMPLATE", template)
            .env("LINTEL_LOOKUP_CONVERSIONS", conversions)
            .output()
            .expect("lintel runs");
        assert!(!out.status.success(), "{template} should be refused");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("[lookup]"), "{template}: {stderr}");
    }
}

crate::on_both_backends!(
    query_style_with_conversions_badges_and_cards,
    path_style_with_bit_slices_and_basic_auth,
    wiegand_and_refused_templates,
);
