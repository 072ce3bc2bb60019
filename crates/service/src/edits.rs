//! Operators' edits of the directory (the API, the web UI, the CLI): checked as the API's
//! contract says, then written through [`Directory::write`], so that the next decision
//! already sees them. Syncs from other systems write through the same store calls, with
//! records they build themselves (see [`crate::people`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lintel_core::CompiledSchedule;
use lintel_proto::{
    Credential, Door, DoorPatch, DriverConfig, Grant, GrantPatch, Group, NewDoor, NewGrant, NewGroup, NewPerson,
    NewSite, PassLasts, Person, PersonPatch, Site, SitePatch,
};
use lintel_store::{NewGrantRecord, Store, StoreError};
use serde_json::{Map, Value};

use crate::credentials::Built;
use crate::directory::{Actor, Directory};
use crate::door_modes::check_door_modes;
use crate::error::{Result, ServiceError};
use crate::{secrets, site_limits, validate};

/// How long a door opens when its settings do not say.
const DEFAULT_OPEN_SECONDS: u32 = 5;
const MAX_OPEN_SECONDS: u32 = 3600;

/// A person's fields as an edit gives them (`None`: not given).
#[derive(Default)]
struct PersonFields<'a> {
    name: Option<&'a str>,
    email: Option<&'a str>,
    phone: Option<&'a str>,
    skills: Option<&'a [String]>,
    attributes: Option<&'a Map<String, Value>>,
    external_ids: Option<&'a BTreeMap<String, String>>,
}

impl PersonFields<'_> {
    fn check(&self) -> Result<()> {
        if let Some(v) = self.name {
            validate::name("name", v)?;
        }
        if let Some(v) = self.email {
            validate::email(v)?;
        }
        if let Some(v) = self.phone {
            validate::phone(v)?;
        }
        if let Some(v) = self.skills {
            validate::skills(v)?;
        }
        if let Some(v) = self.attributes {
            validate::attributes(v)?;
        }
        if let Some(v) = self.external_ids {
            validate::external_ids(v)?;
        }
        Ok(())
    }
}

/// The site a request names, which must exist: an unknown one is the caller's mistake
/// (422), not a missing resource of the path.
pub async fn existing_site(store: &Store, id: &str) -> Result<Site> {
    match store.site(id).await {
        Err(StoreError::NotFound { .. }) => Err(ServiceError::invalid(format!("there is no site {id:?}"))),
        found => Ok(found?),
    }
}

fn check_time_zone(tz: Option<&str>) -> Result<()> {
    match tz {
        Some(name) if name.parse::<chrono_tz::Tz>().is_err() => {
            Err(ServiceError::invalid(format!("time_zone {name:?} is not an IANA time zone name")))
        }
        _ => Ok(()),
    }
}

fn check_door_fields(
    name: Option<&str>,
    driver: Option<&DriverConfig>,
    skill: Option<&str>,
    seconds: Option<u32>,
) -> Result<()> {
    if let Some(v) = name {
        validate::name("name", v)?;
    }
    if let Some(d) = driver {
        lintel_doors::validate(d).map_err(|e| ServiceError::invalid(e.to_string()))?;
    }
    if let Some(v) = skill {
        validate::text("required_skill", v, 64)?;
    }
    if let Some(v) = seconds
        && !(1..=MAX_OPEN_SECONDS).contains(&v)
    {
        return Err(ServiceError::invalid(format!("open_seconds is 1 to {MAX_OPEN_SECONDS}")));
    }
    Ok(())
}

/// A grant as the API describes it, checked whole, as the store keeps it.
fn grant_record(g: NewGrant) -> Result<NewGrantRecord> {
    match (&g.person_id, &g.group_id) {
        (Some(_), None) | (None, Some(_)) => {}
        _ => return Err(ServiceError::invalid("a grant names exactly one of person_id and group_id")),
    }
    if g.doors.is_some() && g.door_group.is_some() {
        return Err(ServiceError::invalid("a grant names doors or a door_group, not both"));
    }
    if g.person_id.is_some() && g.doors.is_none() && g.door_group.is_none() {
        return Err(ServiceError::invalid("a person's grant names its doors or a door_group"));
    }
    if g.doors.as_ref().is_some_and(|d| d.is_empty() || d.len() > 1000) {
        return Err(ServiceError::invalid("doors lists 1 to 1000 doors"));
    }
    if let (Some(from), Some(until)) = (g.valid_from, g.valid_until)
        && from >= until
    {
        return Err(ServiceError::invalid("valid_from must be before valid_until"));
    }
    if let Some(schedule) = &g.schedule {
        if schedule.rules.len() > 100 {
            return Err(ServiceError::invalid("a schedule has at most 100 rules"));
        }
        CompiledSchedule::compile(schedule).map_err(|e| ServiceError::invalid(format!("schedule: {e}")))?;
    }
    if g.passes == Some(0) {
        return Err(ServiceError::invalid("passes is at least 1 (leave it out for unlimited entry)"));
    }
    let pass_lasts = g.pass_lasts.unwrap_or_default();
    match pass_lasts {
        PassLasts::Entry => {}
        _ if g.passes.is_none() => {
            return Err(ServiceError::invalid("pass_lasts needs passes (a grant without passes is unlimited)"));
        }
        PassLasts::Span if g.schedule.is_none() => {
            return Err(ServiceError::invalid(
                "pass_lasts \"span\" needs a schedule: a pass lasts to the end of its span",
            ));
        }
        PassLasts::Minutes(m) if m == 0 || m > PassLasts::MAX_MINUTES => {
            return Err(ServiceError::invalid(format!("pass_lasts minutes is 1 to {}", PassLasts::MAX_MINUTES)));
        }
        PassLasts::Span | PassLasts::Minutes(_) => {}
    }
    if let Some(source) = &g.source {
        validate::text("source", source, 200)?;
    }
    Ok(NewGrantRecord {
        person_id: g.person_id,
        group_id: g.group_id,
        doors: g.doors,
        door_group: g.door_group,
        schedule: g.schedule,
        valid_from: g.valid_from.map(|t| t.timestamp_micros()),
        valid_until: g.valid_until.map(|t| t.timestamp_micros()),
        passes: g.passes,
        pass_lasts,
        source: g.source,
    })
}

/// A door as it is shown: its driver's secrets replaced.
pub fn redacted(mut door: Door) -> Door {
    door.driver = door.driver.redacted();
    door
}

impl Directory {
    pub async fn create_person(self: &Arc<Self>, by: &Actor, p: NewPerson) -> Result<Person> {
        let id = match &p.id {
            Some(id) => {
                validate::id("id", id)?;
                id.clone()
            }
            None => secrets::person_id(),
        };
        PersonFields {
            name: Some(&p.name),
            email: p.email.as_deref(),
            phone: p.phone.as_deref(),
            skills: Some(&p.skills),
            attributes: Some(&p.attributes),
            external_ids: Some(&p.external_ids),
        }
        .check()?;
        Ok(self.write(by, move |store| async move { store.create_person(&p, &id).await }).await?.value)
    }

    /// Changes a person (a merge patch).
    pub async fn patch_person(self: &Arc<Self>, by: &Actor, id: String, p: PersonPatch) -> Result<Person> {
        PersonFields {
            name: p.name.as_deref(),
            email: p.email.as_ref().and_then(|e| e.as_deref()),
            phone: p.phone.as_ref().and_then(|e| e.as_deref()),
            skills: p.skills.as_deref(),
            attributes: p.attributes.as_ref(),
            external_ids: p.external_ids.as_ref(),
        }
        .check()?;
        Ok(self.write(by, move |store| async move { store.patch_person(&id, &p).await }).await?.value)
    }

    /// Removes a person; their credentials stop working at once.
    pub async fn delete_person(self: &Arc<Self>, by: &Actor, id: String) -> Result<()> {
        self.write(by, move |store| async move { store.delete_person(&id).await }).await?;
        Ok(())
    }

    /// Erases a person (see [`lintel_store::Store::forget_person`]); answers the token
    /// their events carry now: random, and one for all of them, so their history still
    /// adds up without naming them. Other processes see the erasure within `settle` (their
    /// follow interval); a second pass then covers the decisions they made meanwhile.
    pub async fn forget_person(self: &Arc<Self>, by: &Actor, id: String, settle: Duration) -> Result<(String, u64)> {
        let token = crate::secrets::generate("forgotten-");
        let (pseudonym, person) = (token.clone(), id.clone());
        let written =
            self.write(by, move |store| async move { store.forget_person(&person, &pseudonym).await }).await?;
        tokio::time::sleep(settle).await;
        let late = self.store.pseudonymise_events(&id, &token).await?;
        Ok((token, written.value + late))
    }

    /// Issues a built credential (see [`crate::CredentialBuilder`]); a generated secret is
    /// in the answer, once.
    pub async fn issue_credential(self: &Arc<Self>, by: &Actor, person: String, built: Built) -> Result<Credential> {
        let Built { record, shown_once } = built;
        let mut credential =
            self.write(by, move |store| async move { store.issue_credential(&person, &record).await }).await?.value;
        credential.secret = shown_once;
        Ok(credential)
    }

    /// Revokes a credential, saying by whom or why; it stops working at once.
    pub async fn revoke_credential(self: &Arc<Self>, by: &Actor, id: String, reason: String) -> Result<Credential> {
        Ok(self.write(by, move |store| async move { store.revoke_credential(&id, &reason).await }).await?.value)
    }

    pub async fn create_site(self: &Arc<Self>, by: &Actor, site: NewSite) -> Result<Site> {
        site_limits::everywhere(by.site(), "adding a site")?;
        validate::id("id", &site.id)?;
        validate::name("name", &site.name)?;
        check_time_zone(site.time_zone.as_deref())?;
        Ok(self.write(by, move |store| async move { store.create_site(&site).await }).await?.value)
    }

    pub async fn patch_site(self: &Arc<Self>, by: &Actor, id: String, p: SitePatch) -> Result<Site> {
        site_limits::everywhere(by.site(), "changing a site")?;
        if let Some(name) = &p.name {
            validate::name("name", name)?;
        }
        check_time_zone(p.time_zone.as_ref().and_then(|tz| tz.as_deref()))?;
        Ok(self.write(by, move |store| async move { store.patch_site(&id, &p).await }).await?.value)
    }

    /// Removes a site that has no doors (and no webhook endpoint limited to it).
    pub async fn delete_site(self: &Arc<Self>, by: &Actor, id: String) -> Result<()> {
        site_limits::everywhere(by.site(), "removing a site")?;
        self.write(by, move |store| async move { store.delete_site(&id).await }).await?;
        Ok(())
    }

    /// Adds a door; one limited to a site adds it there.
    pub async fn create_door(self: &Arc<Self>, by: &Actor, mut door: NewDoor) -> Result<Door> {
        validate::id("id", &door.id)?;
        if let Some(site) = &door.site {
            validate::id("site", site)?;
        }
        if let Some(own) = by.site() {
            match door.site.as_deref() {
                None => door.site = Some(own.to_owned()),
                Some(site) if site == own => {}
                Some(_) => site_limits::everywhere(by.site(), "adding a door at another site")?,
            }
        }
        site_limits::device_within(&self.store, by.site(), &door.id, &door.driver).await?;
        check_door_fields(Some(&door.name), Some(&door.driver), door.required_skill.as_deref(), door.open_seconds)?;
        check_door_modes(self, &door.driver, door.unlock_schedule.as_ref(), door.egress.unwrap_or(false)).await?;
        crate::alarms::check_held_open_seconds(door.held_open_seconds)?;
        let seconds = door.open_seconds.unwrap_or(DEFAULT_OPEN_SECONDS);
        let written = self.write(by, move |store| async move { store.create_door(&door, seconds).await }).await?;
        Ok(redacted(written.value))
    }

    pub async fn patch_door(self: &Arc<Self>, by: &Actor, id: String, p: DoorPatch) -> Result<Door> {
        if let Some(site) = &p.site {
            validate::id("site", site)?;
            if by.site().is_some_and(|own| own != site) {
                site_limits::everywhere(by.site(), "moving a door to another site")?;
            }
        }
        site_limits::doors_within(&self.store, by.site(), [id.as_str()]).await?;
        if let Some(driver) = &p.driver {
            site_limits::device_within(&self.store, by.site(), &id, driver).await?;
        }
        check_door_fields(
            p.name.as_deref(),
            p.driver.as_ref(),
            p.required_skill.as_ref().and_then(|s| s.as_deref()),
            p.open_seconds,
        )?;
        crate::alarms::check_held_open_seconds(p.held_open_seconds)?;
        if p.driver.is_some() {
            crate::door_modes::not_held(&self.store, &id, "changing its driver").await?;
        }
        if p.driver.is_some() || p.unlock_schedule.is_some() || p.egress.is_some() {
            let kept = self.store.door(&id).await?;
            let schedule = p.unlock_schedule.clone().unwrap_or(kept.unlock_schedule);
            let driver = p.driver.as_ref().unwrap_or(&kept.driver);
            check_door_modes(self, driver, schedule.as_ref(), p.egress.unwrap_or(kept.egress)).await?;
        }
        Ok(redacted(self.write(by, move |store| async move { store.patch_door(&id, &p).await }).await?.value))
    }

    /// Removes a door, and it from every group and grant.
    pub async fn delete_door(self: &Arc<Self>, by: &Actor, id: String) -> Result<()> {
        site_limits::doors_within(&self.store, by.site(), [id.as_str()]).await?;
        crate::door_modes::not_held(&self.store, &id, "removing it").await?;
        self.write(by, move |store| async move { store.delete_door(&id).await }).await?;
        Ok(())
    }

    pub async fn create_group(self: &Arc<Self>, by: &Actor, g: NewGroup) -> Result<Group> {
        validate::id("id", &g.id)?;
        validate::name("name", &g.name)?;
        g.doors.iter().try_for_each(|door| validate::id("a door", door))?;
        site_limits::doors_within(&self.store, by.site(), g.doors.iter().map(String::as_str)).await?;
        Ok(self.write(by, move |store| async move { store.create_group(&g.id, &g.name, &g.doors).await }).await?.value)
    }

    /// Removes a group, its memberships and its grants.
    pub async fn delete_group(self: &Arc<Self>, by: &Actor, id: String) -> Result<()> {
        site_limits::group_within(&self.store, by.site(), &id).await?;
        self.write(by, move |store| async move { store.delete_group(&id).await }).await?;
        Ok(())
    }

    /// Puts a person in a group or takes them out (idempotent).
    pub async fn set_member(self: &Arc<Self>, by: &Actor, group: String, person: String, member: bool) -> Result<()> {
        site_limits::group_within(&self.store, by.site(), &group).await?;
        self.write(by, move |store| async move { store.set_member(&group, &person, member).await }).await?;
        Ok(())
    }

    pub async fn create_grant(self: &Arc<Self>, by: &Actor, g: NewGrant) -> Result<Grant> {
        let reach = site_limits::GrantReach {
            doors: g.doors.as_deref(),
            door_group: g.door_group.as_deref(),
            holder_group: g.group_id.as_deref(),
        };
        site_limits::grant_within(&self.store, by.site(), reach).await?;
        let record = grant_record(g)?;
        Ok(self.write(by, move |store| async move { store.create_grant(&record).await }).await?.value)
    }

    /// Changes a grant's doors, hours, validity or passes in place (a merge patch), checked
    /// whole as a new grant would be.
    pub async fn patch_grant(self: &Arc<Self>, by: &Actor, id: String, p: GrantPatch) -> Result<Grant> {
        let seen = self.store.grant(&id).await?;
        site_limits::grant_within(&self.store, by.site(), site_limits::GrantReach::of(&seen)).await?;
        let current = seen.clone();
        let (doors, door_group) = match (p.doors, p.door_group) {
            (Some(_), Some(_)) => return Err(ServiceError::invalid("a grant names doors or a door_group, not both")),
            (Some(doors), None) => (Some(doors), None),
            (None, Some(group)) => (None, Some(group)),
            (None, None) => (current.doors, current.door_group),
        };
        let reach = site_limits::GrantReach {
            doors: doors.as_deref(),
            door_group: door_group.as_deref(),
            holder_group: current.group_id.as_deref(),
        };
        site_limits::grant_within(&self.store, by.site(), reach).await?;
        let record = grant_record(NewGrant {
            person_id: current.person_id,
            group_id: current.group_id,
            doors,
            door_group,
            schedule: p.schedule.unwrap_or(current.schedule),
            valid_from: p.valid_from.unwrap_or(current.valid_from),
            valid_until: p.valid_until.unwrap_or(current.valid_until),
            passes: p.passes.unwrap_or(current.passes),
            pass_lasts: Some(p.pass_lasts.unwrap_or(current.pass_lasts)),
            source: current.source,
        })?;
        Ok(self.write(by, move |store| async move { store.update_grant(&id, &seen, &record).await }).await?.value)
    }

    pub async fn delete_grant(self: &Arc<Self>, by: &Actor, id: String) -> Result<()> {
        if by.site().is_some() {
            let grant = self.store.grant(&id).await?;
            site_limits::grant_within(&self.store, by.site(), site_limits::GrantReach::of(&grant)).await?;
        }
        self.write(by, move |store| async move { store.delete_grant(&id).await }).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(v: Value) -> Result<NewGrantRecord> {
        grant_record(serde_json::from_value(v).expect("a grant"))
    }

    #[test]
    fn a_pass_lasts_only_on_a_grant_with_passes() {
        let with = |extra: Value| {
            let mut g = serde_json::json!({"person_id": "ann", "doors": ["front"]});
            g.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            grant(g)
        };
        let day = serde_json::json!({"tz": "UTC", "rules": [{"weekdays": ["mon"], "from": "04:00", "to": "03:59"}]});
        assert_eq!(
            with(serde_json::json!({"passes": 2, "pass_lasts": {"minutes": 120}})).unwrap().pass_lasts,
            PassLasts::Minutes(120)
        );
        assert_eq!(
            with(serde_json::json!({"passes": 2, "pass_lasts": "span", "schedule": day})).unwrap().pass_lasts,
            PassLasts::Span
        );
        assert_eq!(with(serde_json::json!({"passes": 2})).unwrap().pass_lasts, PassLasts::Entry);
        for bad in [
            serde_json::json!({"pass_lasts": {"minutes": 120}}),
            serde_json::json!({"passes": 2, "pass_lasts": "span"}),
            serde_json::json!({"passes": 2, "pass_lasts": {"minutes": 0}}),
            serde_json::json!({"passes": 2, "pass_lasts": {"minutes": 20000}}),
        ] {
            assert!(with(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn grants_are_checked_whole() {
        assert!(grant(serde_json::json!({"person_id": "ann", "doors": ["front"]})).is_ok());
        for bad in [
            serde_json::json!({"doors": ["front"]}),
            serde_json::json!({"person_id": "ann", "group_id": "g", "doors": ["front"]}),
            serde_json::json!({"person_id": "ann"}),
            serde_json::json!({"person_id": "ann", "doors": []}),
            serde_json::json!({"person_id": "ann", "doors": ["front"], "door_group": "g"}),
            serde_json::json!({"person_id": "ann", "doors": ["front"], "passes": 0}),
            serde_json::json!({"person_id": "ann", "doors": ["front"],
                "valid_from": "2026-01-02T00:00:00Z", "valid_until": "2026-01-01T00:00:00Z"}),
            serde_json::json!({"person_id": "ann", "doors": ["front"],
                "schedule": {"tz": "Mars/Olympus", "rules": []}}),
        ] {
            assert!(matches!(grant(bad.clone()), Err(ServiceError::Invalid(_))), "{bad}");
        }
    }
}
