//! A makerspace CRM (Amilia-style): people with memberships, equipment checkoffs and a
//! card revocation code, behind an OAuth2 token obtained with an admin account.
//!
//! **Token.** `POST {token_url}` with the form `grant_type=password&username=..&password=..`
//! (the resource-owner password grant) answers `{"access_token": "...", "expires_in": 3600}`
//! (`expires_in` in seconds, 3600 when absent). The token is kept and fetched again before it
//! expires: once less than a minute of it is left, or less than half of its lifetime for
//! short-lived tokens. A `401` to a request drops the token, fetches a new one and tries once
//! more.
//!
//! **A person.** `GET {base_url}/persons/{id}` answers (Amilia's PascalCase; the lower
//! camelCase spelling of every field is accepted too):
//!
//! ```json
//! {"Id": 1001, "FirstName": "Ann", "LastName": "Lovelace", "Email": "ann@example.org",
//!  "ExternalId": "R1",
//!  "Memberships": [{"Id": 7, "Name": "Maker"}],
//!  "Skills": [{"Name": "laser"}, "bandsaw"]}
//! ```
//!
//! `Id` is a number or text; `ExternalId` (text or number, may be null) is the card's
//! revocation code; a skill is an object with `Name` or plain text. An unknown person is a
//! `404` with a JSON body, or (older CRMs) a `200` whose JSON object carries `error` (or
//! `Error`, `errors`, `message`) and no `Id`: both are [`None`], never an error. A `404`
//! whose body is not JSON (a proxy's page, a wrong `base_url`) is an error.
//!
//! **A photo.** `GET {base_url}/persons/{id}/photo` answers the JPEG (at most 5 MB); a
//! `404` means none.
//!
//! Only the configured `base_url`'s origin is ever asked about people, and redirects are
//! never followed; ids are digits, so they cannot leave the path they are put in.

use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    #[error("the CRM setting is not usable: {0}")]
    Config(String),
    #[error("the CRM is unreachable: {0}")]
    Unreachable(String),
    #[error("the CRM did not answer in time")]
    TimedOut,
    #[error("the CRM refused lintel's credentials: {0}")]
    Auth(String),
    #[error("the CRM answered HTTP {status}: {reason}")]
    Status { status: u16, reason: String },
    #[error("the CRM's answer does not parse: {0}")]
    Unparsable(String),
}

impl CrmError {
    /// Worth trying again later (the CRM is down, slow or busy), as opposed to an answer
    /// that will not change by itself.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable(_) | Self::TimedOut => true,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::Config(_) | Self::Auth(_) | Self::Unparsable(_) => false,
        }
    }
}

/// A person as the CRM knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: String,
    pub first_name: String,
    pub last_name: String,
    pub email: Option<String>,
    /// The card's revocation code.
    pub external_id: Option<String>,
    pub memberships: Vec<Membership>,
    /// Equipment checkoffs.
    pub skills: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub id: Option<String>,
    pub name: Option<String>,
}

impl Person {
    /// Whether the person holds `membership` (matched against a membership's id, or its
    /// name regardless of case). Without a configured membership, any membership counts.
    pub fn holds(&self, membership: Option<&str>) -> bool {
        let Some(wanted) = membership.map(str::trim) else { return !self.memberships.is_empty() };
        self.memberships.iter().any(|m| {
            m.id.as_deref() == Some(wanted) || m.name.as_deref().is_some_and(|n| n.trim().eq_ignore_ascii_case(wanted))
        })
    }

    /// First and last name, as one.
    pub fn full_name(&self) -> String {
        format!("{} {}", self.first_name.trim(), self.last_name.trim()).trim().to_owned()
    }
}

/// Ids and codes come as numbers or text; lintel keeps them as text.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(serde::de::Error::custom(format!("text or a number, not {other}"))),
    }
}

#[derive(Deserialize)]
struct RawPerson {
    #[serde(rename = "Id", alias = "id", deserialize_with = "text")]
    id: Option<String>,
    #[serde(rename = "FirstName", alias = "firstName", default)]
    first_name: Option<String>,
    #[serde(rename = "LastName", alias = "lastName", default)]
    last_name: Option<String>,
    #[serde(rename = "Email", alias = "email", default)]
    email: Option<String>,
    #[serde(rename = "ExternalId", alias = "externalId", default, deserialize_with = "text")]
    external_id: Option<String>,
    #[serde(rename = "Memberships", alias = "memberships", default)]
    memberships: Option<Vec<RawMembership>>,
    #[serde(rename = "Skills", alias = "skills", default)]
    skills: Option<Vec<RawSkill>>,
}

#[derive(Deserialize)]
struct RawMembership {
    #[serde(rename = "Id", alias = "id", default, deserialize_with = "text")]
    id: Option<String>,
    #[serde(rename = "Name", alias = "name", default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSkill {
    Text(String),
    Named {
        #[serde(rename = "Name", alias = "name")]
        name: String,
    },
}

/// What a `GET /persons/{id}` answer means.
pub fn parse_person(status: u16, body: &[u8]) -> Result<Option<Person>, CrmError> {
    let value: Option<Value> = serde_json::from_slice(body).ok();
    match (status, value) {
        (404, Some(_)) => Ok(None),
        (200, Some(Value::Object(fields))) => {
            let has_id = fields.keys().any(|k| k.eq_ignore_ascii_case("id"));
            let error =
                fields.keys().any(|k| matches!(k.to_ascii_lowercase().as_str(), "error" | "errors" | "message"));
            if !has_id && error {
                return Ok(None);
            }
            let raw: RawPerson =
                serde_json::from_value(Value::Object(fields)).map_err(|e| CrmError::Unparsable(e.to_string()))?;
            let id = raw.id.filter(|id| !id.trim().is_empty()).ok_or_else(|| CrmError::Unparsable("no Id".into()))?;
            let mut skills: Vec<String> = raw
                .skills
                .unwrap_or_default()
                .into_iter()
                .map(|s| match s {
                    RawSkill::Text(name) | RawSkill::Named { name } => name.trim().to_owned(),
                })
                .filter(|s| !s.is_empty())
                .collect();
            skills.sort();
            skills.dedup();
            Ok(Some(Person {
                id: id.trim().to_owned(),
                first_name: raw.first_name.unwrap_or_default(),
                last_name: raw.last_name.unwrap_or_default(),
                email: raw.email.filter(|e| !e.trim().is_empty()),
                external_id: raw.external_id.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()),
                memberships: raw
                    .memberships
                    .unwrap_or_default()
                    .into_iter()
                    .map(|m| Membership { id: m.id, name: m.name })
                    .collect(),
                skills,
            }))
        }
        (200, _) => Err(CrmError::Unparsable("a person is a JSON object".into())),
        (status, _) => Err(CrmError::Status { status, reason: reason_of(body) }),
    }
}

/// The CRM's own words for a refusal, short and printable.
fn reason_of(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(v) => ["error", "Error", "message", "Message", "error_description"]
            .iter()
            .find_map(|k| v.get(*k))
            .unwrap_or(&v)
            .to_string(),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// `application/x-www-form-urlencoded`.
fn form(pairs: &[(&str, &str)]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => (b as char).to_string(),
                b' ' => "+".to_owned(),
                other => format!("%{other:02X}"),
            })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

struct Token {
    value: String,
    /// When to fetch the next one (before this one expires).
    renew_at: Instant,
}

/// The largest photo taken.
const MAX_PHOTO: usize = 5 * 1024 * 1024;

/// A client for one CRM, with its admin credentials.
pub struct Client {
    http: reqwest::Client,
    base: reqwest::Url,
    token_url: reqwest::Url,
    username: String,
    password: String,
    token: Mutex<Option<Token>>,
}

fn http_url(url: &str, what: &str) -> Result<reqwest::Url, CrmError> {
    reqwest::Url::parse(url.trim_end_matches('/'))
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| CrmError::Config(format!("{what} {url:?} is not an http(s) URL")))
}

/// A CRM person id as lintel takes it: digits only, at most 32 (it goes into URLs and onto
/// cards), without leading zeros.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_digit()) && (id == "0" || !id.starts_with('0'))
}

impl Client {
    /// `base` is the CRM's API base (e.g. `https://crm.example/api/v3/org/space`); every
    /// request to it, and the token request, gives up after `timeout`.
    pub fn new(
        base: &str,
        token_url: &str,
        username: &str,
        password: &str,
        timeout: Duration,
    ) -> Result<Self, CrmError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client with these settings always builds");
        Ok(Self {
            http,
            base: http_url(base, "base_url")?,
            token_url: http_url(token_url, "token_url")?,
            username: username.to_owned(),
            password: password.to_owned(),
            token: Mutex::new(None),
        })
    }

    /// The URL of a path on the CRM.
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    /// Whether a URL is on the configured CRM (same scheme, host and port).
    pub fn owns(&self, url: &str) -> bool {
        reqwest::Url::parse(url).is_ok_and(|u| u.origin() == self.base.origin())
    }

    fn unreachable(e: &reqwest::Error) -> CrmError {
        if e.is_timeout() { CrmError::TimedOut } else { CrmError::Unreachable("request failed".into()) }
    }

    /// The current token, fetched when there is none or it is about to expire. Concurrent
    /// callers wait for one fetch.
    async fn token(&self) -> Result<String, CrmError> {
        let mut held = self.token.lock().await;
        if let Some(t) = held.as_ref().filter(|t| Instant::now() < t.renew_at) {
            return Ok(t.value.clone());
        }
        let body = form(&[("grant_type", "password"), ("username", &self.username), ("password", &self.password)]);
        let response = self
            .http
            .post(self.token_url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| Self::unreachable(&e))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| Self::unreachable(&e))?;
        match status {
            200 => {}
            400 | 401 | 403 => return Err(CrmError::Auth(reason_of(&bytes))),
            _ => return Err(CrmError::Status { status, reason: reason_of(&bytes) }),
        }
        let answer: TokenAnswer =
            serde_json::from_slice(&bytes).map_err(|e| CrmError::Unparsable(format!("the token answer: {e}")))?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        let early = Duration::from_secs(60).min(lifetime / 2);
        let token = Token { value: answer.access_token, renew_at: Instant::now() + lifetime - early };
        let value = token.value.clone();
        *held = Some(token);
        Ok(value)
    }

    /// Forgets the token (the CRM revoked it), unless another caller already replaced it.
    async fn drop_token(&self, value: &str) {
        let mut held = self.token.lock().await;
        if held.as_ref().is_some_and(|t| t.value == value) {
            *held = None;
        }
    }

    /// GETs a path on the CRM with the token; on a 401, once more with a fresh token.
    async fn get(&self, path: &str) -> Result<reqwest::Response, CrmError> {
        let url = self.url(path);
        if !self.owns(&url) {
            return Err(CrmError::Config(format!("{url:?} is not on the CRM")));
        }
        for attempt in 0..2 {
            let token = self.token().await?;
            let response = self.http.get(&url).bearer_auth(&token).send().await.map_err(|e| Self::unreachable(&e))?;
            if response.status() == reqwest::StatusCode::UNAUTHORIZED && attempt == 0 {
                self.drop_token(&token).await;
                continue;
            }
            return Ok(response);
        }
        unreachable!("the loop returns")
    }

    /// The person with this id; `None` when the CRM has no such person.
    pub async fn person(&self, id: &str) -> Result<Option<Person>, CrmError> {
        if !valid_id(id) {
            return Err(CrmError::Config(format!("{id:?} is not a CRM person id")));
        }
        let response = self.get(&format!("/persons/{id}")).await?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| Self::unreachable(&e))?;
        let person = parse_person(status, &body)?;
        if let Some(p) = &person
            && p.id.trim_start_matches('0') != id.trim_start_matches('0')
        {
            return Err(CrmError::Unparsable(format!("asked for person {id}, got {}", p.id)));
        }
        Ok(person)
    }

    /// The person's photo (JPEG bytes); `None` when there is none.
    pub async fn photo(&self, id: &str) -> Result<Option<Vec<u8>>, CrmError> {
        if !valid_id(id) {
            return Err(CrmError::Config(format!("{id:?} is not a CRM person id")));
        }
        let mut response = self.get(&format!("/persons/{id}/photo")).await?;
        let status = response.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        if status != 200 {
            let body = response.bytes().await.unwrap_or_default();
            return Err(CrmError::Status { status, reason: reason_of(&body) });
        }
        if response.content_length().is_some_and(|n| n > MAX_PHOTO as u64) {
            return Err(CrmError::Unparsable("the photo is larger than 5 MB".into()));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| Self::unreachable(&e))? {
            if bytes.len() + chunk.len() > MAX_PHOTO {
                return Err(CrmError::Unparsable("the photo is larger than 5 MB".into()));
            }
            bytes.extend_from_slice(&chunk);
        }
        // A JPEG starts with FF D8 FF, whatever the Content-Type says.
        if !bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            return Err(CrmError::Unparsable("the photo is not a JPEG".into()));
        }
        Ok(Some(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_parse_in_both_casings() {
        let pascal = br#"{"Id": 1001, "FirstName": "Ann", "LastName": "Lovelace", "Email": "ann@example.org",
            "ExternalId": 17, "Memberships": [{"Id": 7, "Name": "Maker"}], "Skills": [{"Name": "laser"}, "bandsaw", " "]}"#;
        let p = parse_person(200, pascal).unwrap().unwrap();
        assert_eq!((p.id.as_str(), p.full_name().as_str()), ("1001", "Ann Lovelace"));
        assert_eq!(p.external_id.as_deref(), Some("17"));
        assert_eq!(p.skills, vec!["bandsaw".to_owned(), "laser".to_owned()]);
        assert!(p.holds(Some("maker")) && p.holds(Some("7")) && !p.holds(Some("Visitor")));
        let camel = br#"{"id": "1003", "firstName": "Cy", "lastName": "", "externalId": null,
            "memberships": [], "skills": null}"#;
        let c = parse_person(200, camel).unwrap().unwrap();
        assert_eq!((c.full_name().as_str(), c.external_id.clone(), c.skills.len()), ("Cy", None, 0));
        assert!(!c.holds(Some("Maker")) && !c.holds(None), "no membership, no standing");
    }

    #[test]
    fn not_found_comes_in_two_forms_and_is_no_error() {
        assert_eq!(parse_person(404, br#"{"error": "not found"}"#).unwrap(), None);
        assert_eq!(parse_person(200, br#"{"error": "Person not found"}"#).unwrap(), None);
        assert_eq!(parse_person(200, br#"{"Message": "No such person", "Status": 404}"#).unwrap(), None);
        // A 404 that is not JSON is a wrong URL or a proxy, not an answer about the person.
        assert!(matches!(parse_person(404, b"<html>Not Found</html>"), Err(CrmError::Status { status: 404, .. })));
        assert!(matches!(parse_person(200, b"[1, 2]"), Err(CrmError::Unparsable(_))));
        assert!(matches!(parse_person(200, br#"{"FirstName": "x"}"#), Err(CrmError::Unparsable(_))));
        let outage = parse_person(503, b"maintenance").unwrap_err();
        assert!(outage.is_transient(), "{outage}");
        assert!(!CrmError::Auth("invalid_grant".into()).is_transient());
    }

    #[test]
    fn ids_are_digits_only() {
        for ok in ["1", "1001", "0", "12345678901234567890"] {
            assert!(valid_id(ok), "{ok}");
        }
        for bad in ["", "01", "12a", "../x", "1/2", "1 2", &"9".repeat(33)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn the_token_form_is_encoded() {
        let body = form(&[("grant_type", "password"), ("username", "ops@space.org"), ("password", "a b&c=d%")]);
        assert_eq!(body, "grant_type=password&username=ops%40space.org&password=a+b%26c%3Dd%25");
    }

    #[test]
    fn only_the_configured_origin_is_the_crm() {
        let t = Duration::from_secs(2);
        let client =
            Client::new("https://crm.example/api/v3/org/space", "https://auth.example/token", "u", "p", t).unwrap();
        assert!(client.owns(&client.url("/persons/1")));
        assert!(!client.owns("https://auth.example/token") && !client.owns("http://crm.example/api"));
        assert!(Client::new("ftp://crm.example", "https://auth.example/token", "u", "p", t).is_err());
        assert!(Client::new("https://crm.example", "token", "u", "p", t).is_err());
    }
}
