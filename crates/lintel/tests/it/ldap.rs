//! The badge lookup's LDAP source against a real OpenLDAP `slapd` on loopback, started here
//! with its own configuration and data: the answer and its attribute mapping, the order of
//! the sources, ambiguous badges, injection, a wrong bind password, a directory that is
//! down or hangs, and the settings refused at start.

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lintel_connectors::ldap::{LdapConfig, LdapDirectory, LdapError};
use serde_json::{Value, json};

use crate::harness::{Backend, Database, Server, lintel, small_world, write_file};
use crate::slapd::{BIND_DN, BIND_PASSWORD, Certificate, SUFFIX, Slapd, directory_top, next_instance, server};

const FILTER: &str = "(&(objectClass=inetOrgPerson)(employeeNumber=[DATA]))";

/// The decimal of the reversed bytes of a hex id (the conversions `reverse_bytes,hex_to_decimal`).
fn reversed_decimal(hex: &str) -> String {
    let bytes = hex::decode(hex).unwrap();
    bytes.iter().rev().fold(0u128, |acc, b| (acc << 8) | u128::from(*b)).to_string()
}

/// The directory: a service account only it may read with, and people with badges
/// (`employeeNumber`, from the standard inetOrgPerson schema).
fn people() -> String {
    let person = |uid: &str, cn: &str, mails: &[&str], badge: &str| {
        let mails: String = mails.iter().map(|m| format!("mail: {m}\n")).collect();
        format!(
            "dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {cn}\nsn: {cn}\n\
             {mails}employeeNumber: {badge}\n\n"
        )
    };
    [
        directory_top(),
        person("ann", "Ann Lovelace", &["ann@example.org"], &reversed_decimal("11223344")),
        person("bob", "Bob Builder", &["bob@example.org", "bob.builder@example.org"], &reversed_decimal("55667788")),
        // The same badge as alice's card in lintel: the directory answers first.
        person("alice.dir", "Alice from the directory", &[], &reversed_decimal("04A1B2C3")),
        // In the directory and in the imported export: the export answers first.
        person("dora.dir", "Dora", &[], &reversed_decimal("99AABBCC")),
        // Two people, one badge.
        person("twin1", "Twin One", &[], &reversed_decimal("DEAD0001")),
        person("twin2", "Twin Two", &[], &reversed_decimal("DEAD0001")),
        // A badge on an entry without the attribute answered as user (no uid).
        format!(
            "dn: cn=Kiosk,ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\ncn: Kiosk\nsn: Kiosk\n\
             employeeNumber: {}\n\n",
            reversed_decimal("0BADCAFE")
        ),
    ]
    .concat()
}

const GATE: (&str, &str) = ("gc", "gate-Pa55word");

/// The settings of a lookup that asks this directory.
fn env(slapd: &Slapd, bind_password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("LINTEL_LOOKUP_PATH_TEMPLATE", "/lookup?id=[DATA]".into()),
        ("LINTEL_LOOKUP_CONVERSIONS", "reverse_bytes,hex_to_decimal".into()),
        ("LINTEL_LOOKUP_ATTRIBUTES", "fullname".into()),
        ("LINTEL_LOOKUP_BASIC_AUTH", format!("{}:{}", GATE.0, GATE.1)),
        ("LINTEL_LDAP_URL", slapd.url.clone()),
        ("LINTEL_LDAP_BIND_DN", BIND_DN.into()),
        ("LINTEL_LDAP_BIND_PASSWORD", bind_password.into()),
        ("LINTEL_LDAP_BASE", format!("ou=people,{SUFFIX}")),
        ("LINTEL_LDAP_FILTER", FILTER.into()),
        ("LINTEL_LDAP_USER_ATTRIBUTE", "uid".into()),
        ("LINTEL_LDAP_ATTRIBUTES", "fullname=cn,email=mail".into()),
        ("LINTEL_LDAP_TIMEOUT_MS", "1500".into()),
    ]
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn lookup(s: &Server, raw: &str, auth: Option<(&str, &str)>) -> (u16, Value) {
    let mut req = s.client.get(format!("{}/lookup", s.base)).query(&[("id", raw)]);
    if let Some((user, password)) = auth {
        req = req.basic_auth(user, Some(password));
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Imports a badge export in which dora carries the badge the directory gives dora.dir.
fn import_export(db: &Database) {
    let export = format!("badge,user,fullname\n{},dora,Dora from the export\n", reversed_decimal("99AABBCC"));
    let file = write_file(&db.dir, "badges.csv", &export);
    crate::harness::init(db);
    let out = lintel().args(["import", "--quiet", "--database-url", &db.url]).arg(&file).output().expect("import");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

async fn found_in_the_directory_between_badges_and_cards(b: Backend) {
    let slapd = Slapd::start(&people());
    let db = Database::new(b);
    import_export(&db);
    let s = Server::start_with(&db, &borrowed(&env(&slapd, BIND_PASSWORD)));
    small_world(&s).await;
    s.ok("/api/v1/people/alice/credentials", json!({"kind": "card", "uid": "0A0B0C0D"}), 201).await;
    let gate = Some(GATE);

    // Found through the conversions, the mapping applied; several values are a list.
    let (status, body) = lookup(&s, "11:22:33:44", gate).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"user": "ann", "fullname": "Ann Lovelace", "email": "ann@example.org"}));
    let (status, body) = lookup(&s, "55667788", gate).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"user": "bob", "fullname": "Bob Builder", "email": ["bob@example.org", "bob.builder@example.org"]})
    );

    // The order of the sources: the export, then the directory, then lintel's cards.
    let (status, body) = lookup(&s, "99AABBCC", gate).await;
    assert_eq!((status, body), (200, json!({"user": "dora", "fullname": "Dora from the export"})));
    let (status, body) = lookup(&s, "04A1B2C3", gate).await;
    assert_eq!((status, body), (200, json!({"user": "alice.dir", "fullname": "Alice from the directory"})));
    let (status, body) = lookup(&s, "0A0B0C0D", gate).await;
    assert_eq!((status, body), (200, json!({"user": "alice", "fullname": "Alice"})));

    // Unknown everywhere: 404; an entry without the user attribute is not an answer.
    for unknown in ["DEADBEEF", "0BADCAFE"] {
        let (status, body) = lookup(&s, unknown, gate).await;
        assert_eq!(status, 404, "{unknown}: {body}");
        assert_eq!(body["status"], 404, "{body}");
    }
    // One badge, two people: refused, never the first of them.
    let (status, body) = lookup(&s, "DEAD0001", gate).await;
    assert_eq!(status, 409, "{body}");
    assert!(!body.to_string().contains("twin"), "the directory's entries stay out of the answer: {body}");

    // Filter syntax in the id never reaches the directory: it is not a badge id.
    for attempt in ["*", ")(", "*)(uid=*", "31)(|(uid=*", "\\2a", "3283263748)(objectClass=*"] {
        let (status, body) = lookup(&s, attempt, gate).await;
        assert_eq!(status, 400, "{attempt}: {body}");
    }
    // Basic auth still comes first.
    assert_eq!(lookup(&s, "11223344", None).await.0, 401);
    assert_eq!(lookup(&s, "11223344", Some((GATE.0, "wrong"))).await.0, 401);

    // And the client itself, given the worst ids, against the real server: the escaped id is
    // a value, so it matches nobody rather than everybody.
    let directory = LdapDirectory::new(LdapConfig {
        server: server(&slapd.url, false, BIND_PASSWORD, None),
        base: SUFFIX.into(),
        filter: "(employeeNumber=[DATA])".into(),
        user_attribute: "uid".into(),
        attributes: Default::default(),
        timeout: Duration::from_secs(3),
    })
    .unwrap();
    let ann = reversed_decimal("11223344");
    assert_eq!(directory.find(&ann).await.unwrap().map(|m| m.user), Some("ann".into()));
    for attempt in ["*", "*)(uid=*", "*)(|(uid=*)", &format!("{ann})(uid=*"), &format!("{ann}*"), "\\2a", ")("] {
        assert_eq!(directory.find(attempt).await, Ok(None), "{attempt:?} matched someone");
    }
}

async fn directory_trouble_is_503_and_logged(b: Backend) {
    let mut slapd = Slapd::start(&people());
    let db = Database::new(b);
    import_export(&db);
    let log = db.dir.join("serve.log");
    let wrong_password = "not-the-bind-password";
    let mut settings = env(&slapd, wrong_password);
    settings.push(("RUST_LOG", "debug".into()));
    let s = Server::start_with_stderr(&db, &borrowed(&settings), std::fs::File::create(&log).expect("log"));
    let gate = Some(GATE);

    // A wrong bind password: 503, said clearly in the log, never the password itself; and
    // the directory's refusals are not the client's wrong guesses (no 429 however many).
    for _ in 0..8 {
        let (status, body) = lookup(&s, "11223344", gate).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["status"], 503, "{body}");
    }
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("refused lintel's bind") && text.contains("invalidCredentials"), "{text}");
    assert!(text.contains(BIND_DN), "the log names the account: {text}");
    assert!(!text.contains(wrong_password), "the bind password is in the log");
    s.kill();

    let log = db.dir.join("serve2.log");
    let s = Server::start_with_stderr(
        &db,
        &borrowed(&env(&slapd, BIND_PASSWORD)),
        std::fs::File::create(&log).expect("log"),
    );
    assert_eq!(lookup(&s, "11223344", gate).await.0, 200);

    // The directory hangs (frozen, its port open): 503 once the deadline (1.5 s) passes.
    slapd.freeze();
    let started = Instant::now();
    let (status, body) = lookup(&s, "11223344", gate).await;
    let took = started.elapsed();
    assert_eq!(status, 503, "after {took:?}: {body}");
    assert!(took >= Duration::from_millis(1400) && took < Duration::from_secs(4), "took {took:?}");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("did not answer within 1.5s"), "{text}");
    // It comes back: the next lookup connects anew.
    slapd.thaw();
    assert_eq!(lookup(&s, "11223344", gate).await.0, 200);

    // The directory is gone: 503 at once; the imported badges, asked first, still answer.
    slapd.stop();
    let started = Instant::now();
    let (status, body) = lookup(&s, "11223344", gate).await;
    assert_eq!(status, 503, "{body}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert!(TcpStream::connect(("127.0.0.1", slapd.port)).is_err(), "slapd is down");
    let (status, body) = lookup(&s, "11223344", gate).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(lookup(&s, "11223344", None).await.0, 401, "basic auth first, even with the directory down");
    let (status, body) = lookup(&s, "99AABBCC", gate).await;
    assert_eq!((status, body), (200, json!({"user": "dora", "fullname": "Dora from the export"})));
}

async fn ldap_settings_are_checked_at_start(b: Backend) {
    let db = Database::new(b);
    let serve = |env: &[(&str, &str)]| {
        let mut cmd = lintel();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--database-url", &db.url]).current_dir(&db.dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("lintel runs");
        assert!(!out.status.success(), "{env:?} should stop the start");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let ldap = [
        ("LINTEL_LDAP_URL", "ldap://127.0.0.1:1"),
        ("LINTEL_LDAP_BASE", SUFFIX),
        ("LINTEL_LDAP_FILTER", "(employeeNumber=[DATA])"),
    ];
    // [ldap] without [lookup] does nothing: refused.
    let err = serve(&ldap);
    assert!(err.contains("[ldap]") && err.contains("[lookup]"), "{err}");
    let lookup = ("LINTEL_LOOKUP_PATH_TEMPLATE", "/lookup/[DATA]");
    for (key, bad, says) in [
        ("LINTEL_LDAP_FILTER", "(employeeNumber=1001)", "[DATA]"),
        ("LINTEL_LDAP_FILTER", "employeeNumber=[DATA])(", "not an LDAP filter"),
        ("LINTEL_LDAP_URL", "http://127.0.0.1:389", "ldap://"),
        ("LINTEL_LDAP_BIND_DN", BIND_DN, "bind_password"),
    ] {
        let mut env: Vec<(&str, &str)> = ldap.iter().copied().filter(|(k, _)| *k != key).collect();
        env.extend([lookup, (key, bad)]);
        let err = serve(&env);
        assert!(err.contains("[ldap]") && err.contains(says), "{key}={bad}: {err}");
    }
}

/// A directory error is typed: the wrong password is a bind refusal, not "unreachable".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_names_what_went_wrong() {
    let slapd = Slapd::start(&people());
    let config = |password: &str| LdapConfig {
        server: server(&slapd.url, false, password, None),
        base: format!("ou=nowhere,{SUFFIX}"),
        filter: "(employeeNumber=[DATA])".into(),
        user_attribute: "uid".into(),
        attributes: Default::default(),
        timeout: Duration::from_secs(3),
    };
    let wrong = LdapDirectory::new(config("wrong")).unwrap().find("1").await;
    assert!(matches!(&wrong, Err(LdapError::Bind { dn, .. }) if dn == BIND_DN), "{wrong:?}");
    // A base that does not exist is the operator's mistake, reported as the server said it.
    let nowhere = LdapDirectory::new(config(BIND_PASSWORD)).unwrap().find("1").await;
    assert!(matches!(&nowhere, Err(LdapError::Search(why)) if why.contains("noSuchObject")), "{nowhere:?}");
}

/// ldaps:// and StartTLS against slapd with a certificate lintel is told to trust
/// (`ca_file`); the same server is refused without it: the certificate is always checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldaps_and_starttls_check_the_certificate() {
    let dir = std::env::temp_dir().join(format!("lintel-ldap-tls-{}-{}", std::process::id(), next_instance()));
    std::fs::create_dir_all(&dir).expect("dir");
    let issued = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("certificate");
    let certificate = Certificate {
        cert: write_file(&dir, "slapd.crt", &issued.cert.pem()),
        key: write_file(&dir, "slapd.key", &issued.signing_key.serialize_pem()),
    };
    let slapd = Slapd::start_with(&people(), Some(&certificate));
    let ldaps = slapd.ldaps_url.clone().expect("an ldaps listener");
    let directory = |url: &str, starttls: bool, ca_file: Option<PathBuf>| {
        LdapDirectory::new(LdapConfig {
            server: server(url, starttls, BIND_PASSWORD, ca_file),
            base: SUFFIX.into(),
            filter: FILTER.into(),
            user_attribute: "uid".into(),
            attributes: [("fullname".to_owned(), "cn".to_owned())].into(),
            timeout: Duration::from_secs(3),
        })
        .unwrap()
    };
    let ann = reversed_decimal("11223344");
    for (url, starttls) in [(ldaps.as_str(), false), (slapd.url.as_str(), true)] {
        let found = directory(url, starttls, Some(certificate.cert.clone())).find(&ann).await;
        let found = found.unwrap_or_else(|e| panic!("{url} (starttls {starttls}): {e}")).expect("ann");
        assert_eq!((found.user.as_str(), &found.attributes["fullname"][..]), ("ann", &["Ann Lovelace".to_owned()][..]));
        // Not signed by anything the system trusts: refused before the bind.
        let refused = directory(url, starttls, None).find(&ann).await;
        assert!(matches!(&refused, Err(LdapError::Unreachable(why)) if why.contains("certificate")), "{refused:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

crate::on_both_backends!(
    found_in_the_directory_between_badges_and_cards,
    directory_trouble_is_503_and_logged,
    ldap_settings_are_checked_at_start,
);
