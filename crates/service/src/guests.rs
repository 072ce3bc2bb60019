//! Guest passes: a visitor gets a link to chosen doors for a while, with no app and no
//! account. The visitor becomes a person of their own with a personal secret and a grant
//! valid from/to, so the decision path has nothing new to learn: the grant's window is
//! what lets them in, revoking the pass removes the person (their secret stops at once),
//! and a pass that is over has its person removed by a worker under a lease.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lintel_proto::{GuestPass, NewGuestPass, NewPerson};
use lintel_store::{NewGrantRecord, NewGuestPassRecord, StoreError};
use serde_json::{Map, Value};

use crate::directory::{Actor, Directory};
use crate::error::{Result, ServiceError};
use crate::integrations::invitations::{Invitation, Invitations, visit_link};
use crate::workers::Workers;
use crate::{credentials, validate};

const MAX_DOORS: usize = 50;
const MAX_DAYS: i64 = 366;
/// How often passes that are over are looked for.
const CLOSE_EVERY: Duration = Duration::from_secs(30);

pub struct Guests {
    directory: Arc<Directory>,
    invitations: Option<Arc<Invitations>>,
    public_url: Option<String>,
}

impl Guests {
    pub fn new(directory: Arc<Directory>, invitations: Option<Arc<Invitations>>, public_url: Option<String>) -> Self {
        Self { directory, invitations, public_url }
    }

    /// Issues a pass; the answer carries the secret and the link, once, and whether the
    /// link was queued to the visitor's email.
    pub async fn issue(&self, by: &Actor, pass: NewGuestPass) -> Result<GuestPass> {
        validate::name("name", &pass.name)?;
        if let Some(email) = &pass.email {
            validate::email(email)?;
        }
        let now = Utc::now();
        let from = pass.valid_from.unwrap_or(now);
        check_window(from, pass.valid_until, now)?;
        crate::site_limits::doors_within(&self.directory.store, by.site(), pass.doors.iter().map(String::as_str))
            .await?;
        let place = self.door_names(&pass.doors).await?;
        // Mailed by default when it can be: an email given and `[smtp]` configured.
        let send = pass.send.unwrap_or(pass.email.is_some() && self.invitations.is_some());
        if send && pass.email.is_none() {
            return Err(ServiceError::invalid("send needs an email"));
        }
        if send && self.invitations.is_none() {
            return Err(ServiceError::invalid(
                "sending a pass needs [smtp] configured; leave send out and copy the link",
            ));
        }

        let id = format!("gp_{}", crate::secrets::generate("").get(..16).unwrap_or_default());
        let person_id = format!("guest-{}", &id[3..]);
        let secret = credentials::secret();
        let shown_secret = secret.shown_once.clone().expect("a secret is shown once");
        let attributes = Map::from_iter([("guest_pass".to_owned(), Value::String(id.clone()))]);
        let record = NewGuestPassRecord {
            id: id.clone(),
            person: NewPerson {
                name: pass.name.clone(),
                email: pass.email.clone(),
                attributes,
                ..NewPerson::default()
            },
            person_id: person_id.clone(),
            secret: secret.record,
            grant: NewGrantRecord {
                person_id: Some(person_id.clone()),
                group_id: None,
                doors: Some(pass.doors.clone()),
                door_group: None,
                schedule: None,
                valid_from: Some(from.timestamp_micros()),
                valid_until: Some(pass.valid_until.timestamp_micros()),
                passes: None,
                pass_lasts: Default::default(),
                source: Some(format!("guest:{id}")),
            },
        };
        let mut issued =
            self.directory.write(by, move |store| async move { store.create_guest_pass(&record).await }).await?.value;

        let emailed = match (&self.invitations, send) {
            (Some(invitations), true) => {
                let invitation = Invitation {
                    person: &person_id,
                    name: &pass.name,
                    email: pass.email.as_deref(),
                    phone: None,
                    secret: &shown_secret,
                    doors: &pass.doors,
                    what: format!("You are invited to {place}, {}.", invitations.span(from, pass.valid_until)),
                    place: &place,
                    works: "The link works only in that time.",
                };
                // The pass is issued: a mail that cannot be queued must not lose its link,
                // which is in this answer and nowhere else.
                match invitations.invite(&invitation).await {
                    Ok(queued) => queued,
                    Err(e) => {
                        tracing::warn!(pass = %issued.id, error = %e, "a guest pass's mail could not be queued");
                        false
                    }
                }
            }
            _ => false,
        };
        issued.link = self.public_url.as_deref().map(|url| visit_link(url, &pass.doors, &shown_secret));
        issued.secret = Some(shown_secret);
        issued.emailed = Some(emailed);
        Ok(issued)
    }

    /// Revokes a pass: its visitor is removed, so the link stops working at once.
    pub async fn revoke(&self, by: &Actor, id: String) -> Result<GuestPass> {
        if by.site().is_some() {
            let pass = self.directory.store.guest_pass(&id).await?;
            crate::site_limits::doors_within(&self.directory.store, by.site(), pass.doors.iter().map(String::as_str))
                .await?;
        }
        let who = by.as_str().to_owned();
        Ok(self.directory.write(by, move |store| async move { store.revoke_guest_pass(&id, &who).await }).await?.value)
    }

    pub async fn get(&self, id: &str) -> Result<GuestPass> {
        Ok(self.directory.store.guest_pass(id).await?)
    }

    /// The newest passes first (at most `limit`); `open_only`: neither over nor revoked.
    pub async fn list(&self, open_only: bool, limit: i64) -> Result<Vec<GuestPass>> {
        Ok(self.directory.store.guest_passes(open_only, limit.clamp(1, 500)).await?)
    }

    /// Removes the visitors of passes that are over, on one node at a time.
    pub fn spawn_closer(self: &Arc<Self>, workers: &Workers) {
        let me = self.clone();
        let mut ticks = workers.one_node_every("guest-passes", CLOSE_EVERY);
        workers.spawn(async move {
            while ticks.next().await {
                let directory = &me.directory;
                let closed = directory
                    .write(&Actor::lintel(), |store| async move { store.close_ended_guest_passes().await })
                    .await;
                if let Err(e) = closed {
                    tracing::warn!(error = %e, "guest passes that are over could not be closed");
                }
            }
        });
    }

    /// The doors' names, as the invitation says them ("Front door and Lab"); every door
    /// must exist.
    async fn door_names(&self, doors: &[String]) -> Result<String> {
        if doors.is_empty() || doors.len() > MAX_DOORS {
            return Err(ServiceError::invalid(format!("doors lists 1 to {MAX_DOORS} doors")));
        }
        let mut names = Vec::with_capacity(doors.len());
        for door in doors {
            validate::id("a door", door)?;
            match self.directory.store.door(door).await {
                Ok(d) => names.push(d.name),
                Err(StoreError::NotFound { .. }) => {
                    return Err(ServiceError::invalid(format!("there is no door {door:?}")));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
        })
    }
}

fn check_window(from: DateTime<Utc>, until: DateTime<Utc>, now: DateTime<Utc>) -> Result<()> {
    if until <= from {
        return Err(ServiceError::invalid("valid_until must be after valid_from"));
    }
    if until <= now {
        return Err(ServiceError::invalid("valid_until is in the past: the pass would never open anything"));
    }
    if until - from > chrono::Duration::days(MAX_DAYS) {
        return Err(ServiceError::invalid(format!("a guest pass lasts at most {MAX_DAYS} days")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_ahead_in_order_and_at_most_a_year() {
        let now = Utc::now();
        let hour = chrono::Duration::hours(1);
        assert!(check_window(now, now + hour, now).is_ok());
        assert!(check_window(now - hour, now + hour, now).is_ok(), "already started is fine");
        assert!(check_window(now + hour, now, now).is_err(), "ends before it starts");
        assert!(check_window(now - hour * 2, now - hour, now).is_err(), "over already");
        assert!(check_window(now, now + chrono::Duration::days(367), now).is_err(), "too long");
    }
}
