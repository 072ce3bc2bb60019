//! Plain language for the UI: schedules, grants, reasons, events and times in words.
//! Pure functions, tested below.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use lintel_proto::{Event, Grant, PassLasts, Reason, Schedule, Weekday};

const DAYS: [(Weekday, &str); 7] = [
    (Weekday::Mon, "Mon"),
    (Weekday::Tue, "Tue"),
    (Weekday::Wed, "Wed"),
    (Weekday::Thu, "Thu"),
    (Weekday::Fri, "Fri"),
    (Weekday::Sat, "Sat"),
    (Weekday::Sun, "Sun"),
];

/// `Mon–Fri`, `Mon, Wed, Fri`, `Sat–Sun`, `every day`: runs of three or more days are
/// written as a range.
pub fn weekdays(days: &[Weekday]) -> String {
    let present: Vec<bool> = DAYS.iter().map(|(d, _)| days.contains(d)).collect();
    if present.iter().all(|p| *p) {
        return "every day".into();
    }
    let mut parts = Vec::new();
    let mut i = 0;
    while i < 7 {
        if !present[i] {
            i += 1;
            continue;
        }
        let start = i;
        while i + 1 < 7 && present[i + 1] {
            i += 1;
        }
        match i - start {
            0 => parts.push(DAYS[start].1.to_owned()),
            1 => parts.push(format!("{}, {}", DAYS[start].1, DAYS[i].1)),
            _ => parts.push(format!("{}–{}", DAYS[start].1, DAYS[i].1)),
        }
        i += 1;
    }
    if parts.is_empty() { "no day".into() } else { parts.join(", ") }
}

/// `Mon–Fri 08:00–20:00, Sat 10:00–14:00 (Europe/Berlin time)`; no schedule: at any time.
pub fn schedule(s: Option<&Schedule>) -> String {
    let Some(s) = s else { return "at any time".into() };
    if s.rules.is_empty() {
        return "never (the schedule has no rules)".into();
    }
    let rules: Vec<String> = s
        .rules
        .iter()
        .map(|r| {
            let hours = if r.from == "00:00" && r.to == "24:00" {
                ", all day".to_owned()
            } else if r.to < r.from {
                format!("{}–{} (into the next day)", r.from, r.to)
            } else {
                format!("{}–{}", r.from, r.to)
            };
            let sep = if hours.starts_with(',') { "" } else { " " };
            format!("{}{sep}{hours}", weekdays(&r.weekdays))
        })
        .collect();
    format!("{} ({} time)", rules.join("; "), s.tz)
}

/// A day and a time on the operator's clock: `2026-11-23 09:00`.
pub fn local(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
}

/// `just now`, `5 min ago`, `3 h ago`, `2 days ago`.
pub fn ago(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - at).num_seconds();
    match secs {
        ..60 => "just now".into(),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86_400 => format!("{} h ago", secs / 3600),
        _ => match secs / 86_400 {
            1 => "1 day ago".into(),
            n => format!("{n} days ago"),
        },
    }
}

/// Everything about a grant apart from its doors, in a sentence: when, how long, passes.
pub fn grant_terms(g: &Grant, tz: Tz) -> String {
    let mut parts = vec![schedule(g.schedule.as_ref())];
    match (g.valid_from, g.valid_until) {
        (Some(from), Some(until)) => parts.push(format!("from {} until {}", local(from, tz), local(until, tz))),
        (Some(from), None) => parts.push(format!("from {}", local(from, tz))),
        (None, Some(until)) => parts.push(format!("until {}", local(until, tz))),
        (None, None) => {}
    }
    if let Some(p) = g.passes {
        let left = p.saturating_sub(g.passes_used);
        parts.push(format!("{left} of {p} passes left"));
        match g.pass_lasts {
            PassLasts::Entry => {}
            PassLasts::Span => parts.push("a pass lasts to the end of its span".into()),
            PassLasts::Minutes(m) => parts.push(format!("a pass lasts {m} minutes")),
        }
    }
    if let Some(until) = g.checked_in_until.filter(|until| *until > chrono::Utc::now()) {
        parts.push(format!("checked in until {}", local(until, tz)));
    }
    parts.join(", ")
}

/// Why a decision came out as it did, for an operator.
pub fn reason(r: Reason) -> &'static str {
    match r {
        Reason::Granted => "a grant allows entry now",
        Reason::UnknownCredential => "no credential matches",
        Reason::UnknownMember => "the makerspace CRM has no member with the card's number",
        Reason::UnknownDoor => "there is no such door",
        Reason::PersonSuspended => "the person is suspended",
        Reason::CredentialRevoked => "the credential has been revoked",
        Reason::RevokedCard => "it is an older card (its revocation code is no longer the current one)",
        Reason::NoGrant => "no grant covers this door",
        Reason::OutsideSchedule => "the grants for this door do not cover this time of the week",
        Reason::NotYetValid => "the grant for this door is not valid yet",
        Reason::Expired => "the grant for this door has expired",
        Reason::NoPassesLeft => "every pass of the grant for this door is used up",
        Reason::MissingSkill => "the door needs a skill the person does not have",
        Reason::RateLimited => "too many wrong attempts came from there; it is locked for a while",
        Reason::ListExpired => "the door's controller was offline longer than its allow-list holds",
        Reason::CrmUnavailable => "the makerspace CRM is down and what lintel knows of the member is too old",
        Reason::Lockdown => "the door is in lockdown; only people exempt from it may open it",
        Reason::AntiPassback => "they entered this zone and have not left it since (anti-passback)",
    }
}

/// Up to two initials of a name, for a picture that is not there.
pub fn initials(name: &str) -> String {
    let firsts: Vec<String> = name
        .split_whitespace()
        .filter_map(|w| w.chars().find(|c| c.is_alphanumeric()))
        .map(|c| c.to_uppercase().collect())
        .collect();
    match firsts.as_slice() {
        [] => "?".into(),
        [one] => one.clone(),
        [a, .., b] => format!("{a}{b}"),
    }
}

/// One of eight colours, the same for a person every time.
pub fn tint(id: &str) -> u8 {
    (id.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))) % 8) as u8
}

fn data_str<'a>(e: &'a Event, key: &str) -> Option<&'a str> {
    e.data.get(key).and_then(|v| v.as_str())
}

/// An event in a sentence: `who` and `door` are the display names found for its ids.
pub fn event(e: &Event, who: Option<&str>, door: Option<&str>) -> String {
    let door = door.or(e.door.as_deref()).unwrap_or("a door");
    let who = who.or(e.person_id.as_deref());
    match e.kind.as_str() {
        "decision" => {
            if let (Some(by), None) = (data_str(e, "by"), who) {
                return format!("{door} opened by {by}");
            }
            let subject = match (who, data_str(e, "uid")) {
                (Some(w), _) => w.to_owned(),
                (None, Some(uid)) => format!("Unknown card {uid}"),
                (None, None) => "Someone".to_owned(),
            };
            match (e.allowed, e.reason) {
                (Some(true), _) => format!("{subject} entered at {door}"),
                (_, Some(r)) => format!("{subject} was refused at {door}: {}", reason(r)),
                _ => format!("{subject} was refused at {door}"),
            }
        }
        "door.opened" => match e.data.get("confirmed").and_then(|v| v.as_bool()) {
            Some(true) => format!("{door} opened (the device confirmed)"),
            Some(false) => format!("{door} was told to open (not confirmed)"),
            None => format!("{door} opened"),
        },
        "door.driver_failed" => {
            format!("{door} did not open: {}", data_str(e, "error").unwrap_or("the device failed"))
        }
        "doorbell.rang" => format!("The doorbell rang at {door}"),
        "door.lockdown_started" | "door.lockdown_ended" => {
            let what = if e.kind == "door.lockdown_started" { "put in lockdown" } else { "taken out of lockdown" };
            match &e.actor {
                Some(actor) => format!("{door} {what}, by {actor}"),
                None => format!("{door} {what}"),
            }
        }
        kind => {
            let mut s = kind.replace(['.', '_'], " ");
            if let Some(first) = s.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            let sentence = match (who, e.door.as_deref()) {
                (Some(w), _) => format!("{s}: {w}"),
                (None, Some(_)) => format!("{s}: {door}"),
                (None, None) => s,
            };
            match (&e.actor, changed_fields(e)) {
                (Some(actor), Some(fields)) => format!("{sentence} ({fields}), by {actor}"),
                (Some(actor), None) => format!("{sentence}, by {actor}"),
                (None, _) => sentence,
            }
        }
    }
}

/// The fields an edit changed, as the audit trail keeps them: `name, site`.
fn changed_fields(e: &Event) -> Option<String> {
    let fields: Vec<&str> = e.data.get("after")?.as_object()?.keys().map(String::as_str).collect();
    (!fields.is_empty()).then(|| fields.join(", "))
}

/// `ok`, `refused` or `info`: how an event is coloured.
pub fn event_tone(e: &Event) -> &'static str {
    match (e.kind.as_str(), e.allowed) {
        ("decision", Some(true)) | ("door.opened", _) => "ok",
        ("decision", _) | ("door.driver_failed", _) | ("operation.refused", _) | ("door.lockdown_started", _) => "bad",
        _ => "info",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lintel_proto::ScheduleRule;

    fn rule(days: &[Weekday], from: &str, to: &str) -> ScheduleRule {
        ScheduleRule { weekdays: days.to_vec(), from: from.into(), to: to.into() }
    }

    #[test]
    fn weekdays_read_as_ranges() {
        use Weekday::*;
        assert_eq!(weekdays(&[Mon, Tue, Wed, Thu, Fri]), "Mon–Fri");
        assert_eq!(weekdays(&[Sat, Sun]), "Sat, Sun");
        assert_eq!(weekdays(&[Mon, Wed, Fri]), "Mon, Wed, Fri");
        assert_eq!(weekdays(&[Sun, Mon, Tue, Wed, Thu, Fri, Sat]), "every day");
        assert_eq!(weekdays(&[Mon, Tue, Wed, Sat]), "Mon–Wed, Sat");
    }

    #[test]
    fn schedules_read_as_sentences() {
        use Weekday::*;
        assert_eq!(schedule(None), "at any time");
        let s = Schedule {
            tz: "Europe/Berlin".into(),
            rules: vec![rule(&[Mon, Tue, Wed, Thu, Fri], "08:00", "20:00"), rule(&[Fri], "22:00", "02:00")],
        };
        assert_eq!(schedule(Some(&s)), "Mon–Fri 08:00–20:00; Fri 22:00–02:00 (into the next day) (Europe/Berlin time)");
        let all = Schedule { tz: "UTC".into(), rules: vec![rule(&[Sat, Sun], "00:00", "24:00")] };
        assert_eq!(schedule(Some(&all)), "Sat, Sun, all day (UTC time)");
    }

    #[test]
    fn initials_and_times() {
        assert_eq!(initials("Ada Lovelace"), "AL");
        assert_eq!(initials("grace brewster murray hopper"), "GH");
        assert_eq!(initials("Ünal"), "Ü");
        assert_eq!(initials("  "), "?");
        assert_eq!(initials("Carol <script>x</script> (she/her)"), "CS");
        let now = Utc::now();
        assert_eq!(ago(now, now), "just now");
        assert_eq!(ago(now - chrono::Duration::minutes(5), now), "5 min ago");
        assert_eq!(ago(now - chrono::Duration::days(3), now), "3 days ago");
        assert!(tint("alice") < 8);
    }

    #[test]
    fn a_change_says_who_made_it_and_what_changed() {
        let e = Event {
            id: "2".into(),
            at: Utc::now(),
            kind: "door.updated".into(),
            allowed: None,
            reason: None,
            person_id: None,
            door: Some("front".into()),
            credential_id: None,
            grant_id: None,
            actor: Some("token:desk".into()),
            data: serde_json::json!({"before": {"name": "Front"}, "after": {"name": "Front door"}}),
        };
        assert_eq!(event(&e, None, Some("Front door")), "Door updated: Front door (name), by token:desk");
    }

    #[test]
    fn events_read_as_sentences() {
        let mut e = Event {
            id: "1".into(),
            at: Utc::now(),
            kind: "decision".into(),
            allowed: Some(false),
            reason: Some(Reason::CredentialRevoked),
            person_id: Some("alice".into()),
            door: Some("front".into()),
            credential_id: None,
            grant_id: None,
            actor: None,
            data: serde_json::json!({}),
        };
        assert_eq!(
            event(&e, Some("Alice"), Some("Front door")),
            "Alice was refused at Front door: the credential has been revoked"
        );
        e.allowed = Some(true);
        assert_eq!(event(&e, Some("Alice"), Some("Front door")), "Alice entered at Front door");
        e.person_id = None;
        e.data = serde_json::json!({"by": "admin token \"ci\""});
        assert_eq!(event(&e, None, Some("Front door")), "Front door opened by admin token \"ci\"");
        e.kind = "credential.revoked".into();
        e.person_id = Some("alice".into());
        assert_eq!(event(&e, Some("Alice"), None), "Credential revoked: Alice");
    }
}
