//! The seam through which the decider asks another system about a member before it
//! answers (the makerspace CRM is one). The decider names no such system: it asks whether
//! a decision wants a look-up, waits for it (bounded by the source), and decides again on
//! what the look-up wrote to the directory.

use std::sync::Arc;

use futures::future::BoxFuture;
use lintel_core::{Decision, Index, Pk, Reason};
use lintel_proto::PresentedCredential;

/// A member to look up: the source's own id for them, and the person lintel knows them as
/// (none for a card new to lintel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberLookup {
    pub member: String,
    pub known: Option<Pk>,
}

/// What a look-up came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Looked {
    /// Someone else (another node, the CLI) fetched them recently: nothing asked.
    Fresh,
    /// Fetched and applied: decide again on the new data.
    Found,
    /// The source has no such member.
    NotFound,
    /// The source failed or was slow: decided on what lintel had.
    Failed(String),
    /// The source failed and what lintel has is older than the source's age limit: not
    /// enough to let the member in.
    TooOld(String),
}

pub trait MemberSource: Send + Sync {
    /// Its name in a decision's event (`crm`: `"crm": "fetched"`, `"crm_error"`).
    fn name(&self) -> &'static str;

    /// The person a station's member credential names when it carries the source's own
    /// number (`1001` is `crm-1001`); `None` when it is a lintel person id.
    fn person_for_member(&self, presented: &str) -> Option<String>;

    /// Whether this decision should ask the source first. Runs on every decision: it
    /// must be cheap (no I/O).
    fn wants(&self, index: &Index, decision: &Decision, credential: &PresentedCredential) -> Option<MemberLookup>;

    /// Asks the source (within its own deadline) and brings the directory up to date.
    fn look_up(self: Arc<Self>, lookup: MemberLookup) -> BoxFuture<'static, Looked>;

    /// The denial's words when the source has no such member.
    fn unknown_member_detail(&self) -> &'static str;

    /// The reason an allowed decision is refused with when the source is down and lintel's
    /// data is too old.
    fn unavailable_reason(&self) -> Reason;
}

impl Looked {
    /// The decision made after the look-up, as it should be answered.
    pub(crate) fn adjust(&self, source: &dyn MemberSource, decision: Decision) -> Decision {
        match self {
            Self::NotFound => decision.unknown_member(source.unknown_member_detail()),
            Self::TooOld(error) => decision.unvouched(
                source.unavailable_reason(),
                format!("{} is unavailable and what lintel knows of the member is too old ({error})", source.name()),
            ),
            _ => decision,
        }
    }

    /// What the decision's event says about the look-up.
    pub(crate) fn annotate(&self, source: &dyn MemberSource, data: &mut serde_json::Value) {
        let name = source.name();
        match self {
            Self::Fresh => {}
            Self::Found => data[name] = "fetched".into(),
            Self::NotFound => data[name] = "not_found".into(),
            Self::Failed(error) | Self::TooOld(error) => {
                data[name] = "failed".into();
                data["stale"] = true.into();
                data[format!("{name}_error")] = error.as_str().into();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named;

    impl MemberSource for Named {
        fn name(&self) -> &'static str {
            "crm"
        }
        fn person_for_member(&self, _: &str) -> Option<String> {
            None
        }
        fn wants(&self, _: &Index, _: &Decision, _: &PresentedCredential) -> Option<MemberLookup> {
            None
        }
        fn look_up(self: Arc<Self>, _: MemberLookup) -> BoxFuture<'static, Looked> {
            Box::pin(async { Looked::Fresh })
        }
        fn unknown_member_detail(&self) -> &'static str {
            "no such member"
        }
        fn unavailable_reason(&self) -> Reason {
            Reason::CrmUnavailable
        }
    }

    #[test]
    fn a_lookup_says_what_it_did_in_the_event() {
        let mut data = serde_json::json!({});
        Looked::Failed("the CRM answered HTTP 503: down".into()).annotate(&Named, &mut data);
        assert_eq!(data["stale"], true);
        assert_eq!(data["crm_error"], "the CRM answered HTTP 503: down");
        let mut data = serde_json::json!({});
        Looked::Found.annotate(&Named, &mut data);
        assert_eq!((data["crm"].as_str(), data.get("stale")), (Some("fetched"), None));
        let mut data = serde_json::json!({});
        Looked::Fresh.annotate(&Named, &mut data);
        assert_eq!(data, serde_json::json!({}), "nothing asked, nothing said");
    }
}
