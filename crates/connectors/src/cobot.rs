//! A coworking membership platform (Cobot-style, API v1): memberships, plans with time
//! passes, check-in tokens and check-ins, and webhook subscriptions.
//!
//! Webhook deliveries are not signed; they only name a URL. Trust comes from fetching that
//! URL with our own token, and only from the configured space's origin: [`Client::fetch`]
//! refuses any other scheme, host or port, so a forged delivery cannot make lintel call
//! anywhere else.

use std::time::Duration;

use chrono::NaiveDate;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum CobotError {
    #[error("the URL is not on the configured space ({0})")]
    ForeignUrl(String),
    #[error("the platform is unreachable: {0}")]
    Unreachable(String),
    #[error("the platform answered HTTP {status}: {reason}")]
    Status { status: u16, reason: String },
    #[error("the platform's answer does not parse: {0}")]
    Unparsable(String),
    /// lintel's own refusal of a piece of work (a delivery naming nothing it follows).
    #[error("not processed: {0}")]
    Rejected(String),
}

impl CobotError {
    /// Worth trying again later (the platform is down or busy), as opposed to an answer
    /// that will not change.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable(_) => true,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::ForeignUrl(_) | Self::Unparsable(_) | Self::Rejected(_) => false,
        }
    }
}

/// Ids are numbers or strings depending on the endpoint; lintel keeps them as text.
fn id_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!("an id, not {other}"))),
    }
}

/// Dates come as `2026/03/31` (API v1) or `2026-03-31`; a time after the date is ignored.
fn date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else { return Ok(None) };
    let day = text.get(..10).unwrap_or(&text).replace('/', "-");
    NaiveDate::parse_from_str(&day, "%Y-%m-%d").map(Some).map_err(serde::de::Error::custom)
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PlanRef {
    #[serde(deserialize_with = "id_text")]
    pub id: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct MembershipPlan {
    #[serde(deserialize_with = "id_text")]
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// A plan assigned to a membership is a copy of the space's plan: this is the original.
    #[serde(default)]
    pub parent_plan: Option<PlanRef>,
}

impl MembershipPlan {
    /// The space's plan id, the safe key (names can be edited per membership).
    pub fn space_plan_id(&self) -> &str {
        self.parent_plan.as_ref().map_or(&self.id, |p| &p.id)
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Membership {
    #[serde(deserialize_with = "id_text")]
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    pub plan: MembershipPlan,
    #[serde(default, deserialize_with = "date")]
    pub starts_at: Option<NaiveDate>,
    /// The last day of a canceled membership.
    #[serde(default, deserialize_with = "date")]
    pub canceled_to: Option<NaiveDate>,
    #[serde(default)]
    pub custom_fields: Option<Value>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Timespan {
    pub weekdays: Vec<String>,
    pub from_hour: u32,
    #[serde(default)]
    pub from_minute: u32,
    pub to_hour: u32,
    #[serde(default)]
    pub to_minute: u32,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PassType {
    #[serde(deserialize_with = "id_text")]
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub parsed_timespans: Vec<Timespan>,
    /// A duration pass: a check-in with it lasts this long (a timespan pass lasts to the
    /// end of its span).
    #[serde(default)]
    pub duration_in_minutes: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Plan {
    #[serde(deserialize_with = "id_text")]
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub time_passes: Vec<PassType>,
}

/// One unused pass of a membership.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct UnusedPass {
    /// The pass type, when the platform says which.
    #[serde(default, deserialize_with = "optional_id")]
    pub time_pass_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

fn optional_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(serde::de::Error::custom(format!("an id, not {other}"))),
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Resource {
    #[serde(deserialize_with = "id_text")]
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// A check-in, as a `created_checkin` delivery points at it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct CheckIn {
    #[serde(default, deserialize_with = "optional_id")]
    pub membership_id: Option<String>,
    #[serde(default)]
    pub membership: Option<IdOnly>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct IdOnly {
    #[serde(deserialize_with = "id_text")]
    pub id: String,
}

impl CheckIn {
    pub fn membership(&self) -> Option<&str> {
        self.membership_id.as_deref().or(self.membership.as_ref().map(|m| m.id.as_str()))
    }
}

/// Booking times come as RFC 3339 or as API v1's `2026/11/23 10:00:00 +0100`.
fn instant<'de, D: Deserializer<'de>>(d: D) -> Result<chrono::DateTime<chrono::Utc>, D::Error> {
    let text = String::deserialize(d)?;
    chrono::DateTime::parse_from_rfc3339(&text)
        .or_else(|_| chrono::DateTime::parse_from_str(&text, "%Y/%m/%d %H:%M:%S %z"))
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a time")))
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
struct CustomFields {
    #[serde(default)]
    fields: Vec<CustomField>,
}

/// One custom field of a membership, as the space named it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct CustomField {
    pub label: String,
    #[serde(default, deserialize_with = "field_value")]
    pub value: String,
}

/// A field's value as text (the platform sends text, numbers or booleans; null is empty).
fn field_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// A room booking; a visitor's (external) booking has no membership, but a contact.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Booking {
    #[serde(deserialize_with = "id_text")]
    pub id: String,
    #[serde(deserialize_with = "instant")]
    pub from: chrono::DateTime<chrono::Utc>,
    #[serde(deserialize_with = "instant")]
    pub to: chrono::DateTime<chrono::Utc>,
    pub resource: Resource,
    #[serde(default)]
    pub membership: Option<IdOnly>,
}

/// A visitor's details, from the booking's external booking in API 2.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct ExternalContact {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
}

/// The JSON:API document shapes lintel reads (`{"data": {"id", "attributes",
/// "relationships"}}`).
#[derive(Deserialize)]
struct Document<T> {
    data: T,
}

#[derive(Deserialize)]
struct BookingResource {
    #[serde(default)]
    relationships: BookingRelationships,
}

#[derive(Deserialize, Default)]
struct BookingRelationships {
    #[serde(default, rename = "externalBooking")]
    external_booking: Option<Document<Option<IdOnly>>>,
}

#[derive(Deserialize)]
struct ExternalBookingResource {
    attributes: ExternalContact,
}

/// A client for one space, with its OAuth2 bearer token: API v1 on the space's own host,
/// API 2 (JSON:API) on the platform's; nothing else is ever fetched.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: reqwest::Url,
    api2: reqwest::Url,
    token: String,
}

fn http_url(url: &str) -> Result<reqwest::Url, CobotError> {
    reqwest::Url::parse(url.trim_end_matches('/'))
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| CobotError::ForeignUrl(format!("{url:?} is not an http(s) URL")))
}

const JSON_API: &str = "application/vnd.api+json";

impl Client {
    /// `base` is the space's API base, e.g. `https://space.cobot.me`; `api2` the platform's
    /// JSON:API, `https://api.cobot.me`.
    pub fn new(base: &str, api2: &str, token: &str) -> Result<Self, CobotError> {
        let base = http_url(base)?;
        let api2 = http_url(api2)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client with these settings always builds");
        Ok(Self { http, base, api2, token: token.to_owned() })
    }

    /// The URL of a path on the space.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    /// Whether a URL is on the configured space (same scheme, host and port).
    pub fn owns(&self, url: &str) -> bool {
        reqwest::Url::parse(url).is_ok_and(|u| u.origin() == self.base.origin())
    }

    /// Fetches a URL on the space (what a webhook delivery names) with our token.
    pub async fn fetch<T: DeserializeOwned>(&self, url: &str) -> Result<T, CobotError> {
        if !self.owns(url) {
            return Err(CobotError::ForeignUrl(url.chars().take(200).collect()));
        }
        self.send(self.http.get(url)).await
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, CobotError> {
        let response = request.bearer_auth(&self.token).send().await.map_err(|e| {
            CobotError::Unreachable(if e.is_timeout() { "timed out".into() } else { "request failed".into() })
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|_| CobotError::Unreachable("the answer broke off".into()))?;
        if !status.is_success() {
            return Err(CobotError::Status { status: status.as_u16(), reason: reason_of(&body) });
        }
        serde_json::from_slice(&body).map_err(|e| CobotError::Unparsable(e.to_string()))
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, CobotError> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    pub async fn memberships(&self) -> Result<Vec<Membership>, CobotError> {
        self.fetch(&self.url("/api/memberships")).await
    }

    pub async fn membership(&self, id: &str) -> Result<Membership, CobotError> {
        self.fetch(&self.url(&format!("/api/memberships/{id}"))).await
    }

    /// The visitor's details of a booking made through the external booking portal: the
    /// booking's `externalBooking` relationship in API 2, then that resource. `None` when
    /// the booking has none.
    pub async fn external_contact(&self, booking_id: &str) -> Result<Option<ExternalContact>, CobotError> {
        let api2 = self.api2.as_str().trim_end_matches('/');
        let booking: Document<BookingResource> =
            self.send(self.http.get(format!("{api2}/bookings/{booking_id}")).header("accept", JSON_API)).await?;
        let Some(external) = booking.data.relationships.external_booking.and_then(|r| r.data) else {
            return Ok(None);
        };
        if !external.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') || external.id.len() > 64 {
            return Err(CobotError::Unparsable(format!("external booking id {:?}", external.id)));
        }
        let url = format!("{api2}/external_bookings/{}", external.id);
        let resource: Document<ExternalBookingResource> =
            self.send(self.http.get(url).header("accept", JSON_API)).await?;
        Ok(Some(resource.data.attributes))
    }

    /// A membership's custom fields (`{"fields": [{"label", "value"}]}`).
    pub async fn custom_fields(&self, membership_id: &str) -> Result<Vec<CustomField>, CobotError> {
        let answer: CustomFields =
            self.fetch(&self.url(&format!("/api/memberships/{membership_id}/custom_fields"))).await?;
        Ok(answer.fields)
    }

    pub async fn plans(&self) -> Result<Vec<Plan>, CobotError> {
        self.fetch(&self.url("/api/plans")).await
    }

    pub async fn resources(&self) -> Result<Vec<Resource>, CobotError> {
        self.fetch(&self.url("/api/resources")).await
    }

    pub async fn unused_passes(&self, membership_id: &str) -> Result<Vec<UnusedPass>, CobotError> {
        self.fetch(&self.url(&format!("/api/memberships/{membership_id}/time_passes/unused"))).await
    }

    /// Bookings between two days (the sync's look at what is coming).
    pub async fn bookings(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<Booking>, CobotError> {
        let url = self.url(&format!("/api/bookings?from={}&to={}", from.format("%Y-%m-%d"), to.format("%Y-%m-%d")));
        self.fetch(&url).await
    }

    pub async fn subscribe(&self, event: &str, callback_url: &str) -> Result<Value, CobotError> {
        self.post("/api/subscriptions", &serde_json::json!({"event": event, "callback_url": callback_url})).await
    }

    /// Tells the platform the opaque token lintel will check this member in with.
    pub async fn register_check_in_token(&self, membership_id: &str, token: &str) -> Result<(), CobotError> {
        let body = serde_json::json!({"membership_id": membership_id, "token": token});
        self.post("/api/check_in_tokens", &body).await.map(drop)
    }

    /// Checks the member with this token in (which uses up a pass where the plan has them).
    pub async fn check_in(&self, token: &str) -> Result<(), CobotError> {
        self.post("/api/check_ins", &serde_json::json!({"token": token})).await.map(drop)
    }
}

/// The platform's own words for a refusal (`{"error": ...}` or `{"errors": ...}`), short.
fn reason_of(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(v) => v.get("error").or_else(|| v.get("errors")).or_else(|| v.get("message")).unwrap_or(&v).to_string(),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}

/// The events lintel subscribes to.
pub const EVENTS: &[&str] = &[
    "confirmed_membership",
    "canceled_membership",
    "membership_cancellation_date_reached",
    "reactivated_membership",
    "changed_membership_plan",
    "membership_plan_change_date_reached",
    "membership_added_time_passes",
    "membership_removed_time_passes",
    "created_checkin",
    "updated_custom_field",
    "created_booking",
    "updated_booking",
    "deleted_booking",
    "booking_will_begin",
    "booking_has_ended",
    "approved_external_booking",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memberships_parse_with_either_date_style_and_numeric_ids() {
        let m: Membership = serde_json::from_str(
            r#"{"id": 93207605, "name": "Ann", "email": "ann@example.org",
                "plan": {"id": "p-copy", "name": "Full time (edited)", "parent_plan": {"id": 42}},
                "starts_at": "2026/01/01", "canceled_to": "2026-03-31T00:00:00+01:00"}"#,
        )
        .unwrap();
        assert_eq!(m.id, "93207605");
        assert_eq!(m.plan.space_plan_id(), "42");
        assert_eq!(m.canceled_to, NaiveDate::from_ymd_opt(2026, 3, 31));
        assert_eq!(m.starts_at, NaiveDate::from_ymd_opt(2026, 1, 1));
        let plain: Membership = serde_json::from_str(r#"{"id": "7", "plan": {"id": "9"}}"#).unwrap();
        assert_eq!((plain.plan.space_plan_id(), plain.canceled_to), ("9", None));
    }

    #[test]
    fn bookings_parse_in_both_time_styles() {
        let b: Booking = serde_json::from_str(
            r#"{"id": 5, "from": "2026/11/23 10:00:00 +0100", "to": "2026-11-23T12:00:00+01:00",
                "resource": {"id": 3, "name": "Room"}, "membership": null, "email": "v@example.org"}"#,
        )
        .unwrap();
        assert_eq!((b.id.as_str(), b.resource.id.as_str()), ("5", "3"));
        assert_eq!((b.to - b.from).num_hours(), 2);
        assert_eq!(b.membership, None);
        assert!(
            serde_json::from_str::<Booking>(r#"{"id": 5, "from": "soon", "to": "later", "resource": {"id": 3}}"#)
                .is_err()
        );
    }

    #[test]
    fn only_urls_on_the_configured_space_are_fetched() {
        let client = Client::new("https://space.cobot.me", "https://api.cobot.me", "t").unwrap();
        // API 2 is asked only at paths lintel builds itself, never at a URL from outside.
        assert!(!client.owns("https://api.cobot.me/bookings/1"));
        assert!(client.owns("https://space.cobot.me/api/memberships/1"));
        for foreign in [
            "https://other.cobot.me/api/memberships/1",
            "http://space.cobot.me/api/memberships/1",
            "https://space.cobot.me:8443/api/memberships/1",
            "https://space.cobot.me.evil.example/api",
            "https://evil.example/?space.cobot.me",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(!client.owns(foreign), "{foreign}");
        }
    }

    #[test]
    fn refusals_are_told_from_outages() {
        let refused = CobotError::Status { status: 422, reason: "no time passes left".into() };
        assert!(!refused.is_transient());
        assert!(CobotError::Status { status: 503, reason: String::new() }.is_transient());
        assert!(CobotError::Unreachable("x".into()).is_transient());
        assert_eq!(reason_of(br#"{"error": "no time passes left"}"#), "\"no time passes left\"");
    }
}
