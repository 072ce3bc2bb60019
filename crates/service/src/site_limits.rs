//! Operators limited to one site (a building's own admin or front desk in a chain of
//! spaces). The people are shared by every site (a member may use any of them), so
//! people, their credentials and their details are managed as the role allows; what
//! gives or takes access to doors (groups, memberships, grants, guest passes,
//! enrolments), the doors themselves and opening them are theirs only at their site. Every
//! write that concerns doors asks here, whichever front-end it came from.

use std::collections::{BTreeMap, BTreeSet};

use lintel_proto::{DriverConfig, Grant, Group};
use lintel_store::{Store, StoreError};

use crate::error::{Result, ServiceError};

fn refused(site: &str, detail: String) -> ServiceError {
    ServiceError::forbidden("forbidden", format!("{detail}: your role is limited to the site {site:?}"))
}

/// Refuses what only an operator of every site may do (sites, integrations, webhooks).
pub fn everywhere(limit: Option<&str>, what: &str) -> Result<()> {
    match limit {
        Some(site) => Err(refused(site, format!("{what} is for an operator of every site"))),
        None => Ok(()),
    }
}

/// Refuses, for an operator limited to the site `limit`, any of `doors` at another site
/// (one that does not exist is left to the write, which answers for it).
pub async fn doors_within<'a>(
    store: &Store,
    limit: Option<&str>,
    doors: impl IntoIterator<Item = &'a str>,
) -> Result<()> {
    let Some(site) = limit else { return Ok(()) };
    // The named doors only (usually one: a decision's, an opening's), not the whole list.
    for door in doors.into_iter().collect::<BTreeSet<&str>>() {
        match store.door(door).await {
            Ok(d) if d.site != site => return Err(refused(site, format!("the door {door:?} is not at your site"))),
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The device a driver switches, as far as one can tell from its settings.
fn device(driver: &DriverConfig) -> Option<String> {
    match driver {
        DriverConfig::None {} => None,
        DriverConfig::Shelly { url, channel, .. } => {
            Some(format!("shelly:{}#{channel}", url.trim_end_matches('/').to_ascii_lowercase()))
        }
        DriverConfig::ShellyCloud { device_id, channel, .. } => Some(format!("shelly-cloud:{device_id}#{channel}")),
        DriverConfig::Http { url, .. } => Some(format!("http:{url}")),
        DriverConfig::Mqtt { controller, .. } => Some(format!("mqtt:{controller}")),
        DriverConfig::Osdp { reader, .. } => Some(format!("osdp:{reader}")),
    }
}

/// Refuses, for an operator limited to the site `limit`, a driver for `door` that switches
/// a device another site's door uses: else a door of their own would open another site's
/// (in its lockdown too).
pub async fn device_within(store: &Store, limit: Option<&str>, door: &str, driver: &DriverConfig) -> Result<()> {
    let (Some(site), Some(wanted)) = (limit, device(driver)) else { return Ok(()) };
    let others = store.doors(None).await?;
    match others.iter().find(|d| d.site != site && d.id != door && device(&d.driver).as_ref() == Some(&wanted)) {
        Some(_) => Err(refused(site, "this device belongs to a door at another site".to_owned())),
        None => Ok(()),
    }
}

/// What a grant opens: its doors, or a door group's, or (neither given) the doors of the
/// group that holds it.
#[derive(Debug, Clone, Copy)]
pub struct GrantReach<'a> {
    pub doors: Option<&'a [String]>,
    pub door_group: Option<&'a str>,
    /// The group that holds the grant, if a group does.
    pub holder_group: Option<&'a str>,
}

impl<'a> GrantReach<'a> {
    pub fn of(grant: &'a Grant) -> Self {
        Self {
            doors: grant.doors.as_deref(),
            door_group: grant.door_group.as_deref(),
            holder_group: grant.group_id.as_deref(),
        }
    }

    /// The group whose doors it opens, when it names no doors itself.
    fn group(&self) -> Option<&'a str> {
        match (self.doors, self.door_group) {
            (Some(_), _) => None,
            (None, Some(group)) => Some(group),
            (None, None) => self.holder_group,
        }
    }
}

/// The doors a grant concerns.
async fn grant_doors(store: &Store, reach: GrantReach<'_>) -> Result<Vec<String>> {
    let mut all = reach.doors.map(<[String]>::to_vec).unwrap_or_default();
    if let Some(group) = reach.group() {
        match store.group(group).await {
            Ok(g) => all.extend(g.doors),
            // The write itself answers for a group that does not exist.
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(all)
}

/// Refuses a grant that opens a door beyond the site `limit`.
pub async fn grant_within(store: &Store, limit: Option<&str>, reach: GrantReach<'_>) -> Result<()> {
    if limit.is_none() {
        return Ok(());
    }
    let doors = grant_doors(store, reach).await?;
    doors_within(store, limit, doors.iter().map(String::as_str)).await
}

/// Refuses a change of a group (its members, or removing it) when its doors or those of
/// its grants reach beyond the site `limit`: a member of the group opens all of them.
pub async fn group_within(store: &Store, limit: Option<&str>, group: &str) -> Result<()> {
    if limit.is_none() {
        return Ok(());
    }
    let mut doors = match store.group(group).await {
        Ok(g) => g.doors,
        Err(StoreError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for grant in store.grants(None).await?.into_iter().filter(|g| g.group_id.as_deref() == Some(group)) {
        doors.extend(grant_doors(store, GrantReach::of(&grant)).await?);
    }
    doors_within(store, limit, doors.iter().map(String::as_str)).await
}

/// The doors of a site, to list what concerns them (`site=` on groups and grants, and
/// what an operator limited to it sees).
pub struct SiteDoors {
    doors: BTreeSet<String>,
    /// Each group's doors, for grants that name a door group.
    groups: BTreeMap<String, Vec<String>>,
}

impl SiteDoors {
    pub async fn of(store: &Store, site: &str) -> Result<Self> {
        let doors = store.doors(Some(site)).await?.into_iter().map(|d| d.id).collect();
        let groups = store.groups().await?.into_iter().map(|g| (g.id, g.doors)).collect();
        Ok(Self { doors, groups })
    }

    /// Whether any of `doors` is at the site (a guest pass's, say).
    pub fn any(&self, doors: &[String]) -> bool {
        doors.iter().any(|d| self.doors.contains(d))
    }

    /// A grant that opens any of the site's doors.
    pub fn grant(&self, grant: &Grant) -> bool {
        let reach = GrantReach::of(grant);
        let group_doors = reach.group().and_then(|g| self.groups.get(g));
        reach.doors.is_some_and(|d| self.any(d)) || group_doors.is_some_and(|d| self.any(d))
    }

    /// A group with any of the site's doors, or holding a grant to one.
    pub fn group(&self, group: &Group, grants: &[Grant]) -> bool {
        self.any(&group.doors)
            || grants.iter().any(|g| g.group_id.as_deref() == Some(group.id.as_str()) && self.grant(g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lintel_proto::{NewDoor, NewSite};

    #[tokio::test]
    async fn a_site_limited_operator_reaches_only_the_doors_of_their_site() {
        let (_dir, store) = crate::testing::store().await;
        let north = NewSite { id: "north".into(), name: "North".into(), time_zone: None };
        store.create_site(&north).await.unwrap();
        for (id, site) in [("n1", "north"), ("m1", "main")] {
            let door: NewDoor =
                serde_json::from_value(serde_json::json!({"id": id, "name": id, "site": site})).unwrap();
            store.create_door(&door, 3).await.unwrap();
        }
        store.create_group("north-staff", "North staff", &["n1".into()]).await.unwrap();
        store.create_group("everyone", "Everyone", &["n1".into(), "m1".into()]).await.unwrap();
        let (limited, whole) = (Some("north"), None);

        assert!(doors_within(&store, limited, ["n1"]).await.is_ok());
        let refused = doors_within(&store, limited, ["n1", "m1"]).await.unwrap_err();
        assert!(refused.to_string().contains("\"m1\""), "{refused}");
        assert!(doors_within(&store, limited, ["nowhere"]).await.is_ok(), "the write answers for an unknown door");
        assert!(doors_within(&store, whole, ["n1", "m1", "nowhere"]).await.is_ok());

        assert!(group_within(&store, limited, "north-staff").await.is_ok());
        assert!(group_within(&store, limited, "everyone").await.is_err());
        let reach = |doors, door_group, holder_group| GrantReach { doors, door_group, holder_group };
        assert!(grant_within(&store, limited, reach(None, Some("north-staff"), None)).await.is_ok());
        let main_door = ["m1".to_owned()];
        assert!(grant_within(&store, limited, reach(Some(&main_door), None, None)).await.is_err());
        assert!(grant_within(&store, limited, reach(None, Some("everyone"), None)).await.is_err());
        // A group's grant without doors opens the group's own.
        assert!(grant_within(&store, limited, reach(None, None, Some("everyone"))).await.is_err());
        assert!(grant_within(&store, limited, reach(None, None, Some("north-staff"))).await.is_ok());
        assert!(everywhere(limited, "adding a site").is_err() && everywhere(whole, "adding a site").is_ok());

        store.create_group("main-staff", "Main staff", &["m1".into()]).await.unwrap();
        let grant: Grant = serde_json::from_value(serde_json::json!({
            "id": "g1", "group_id": "main-staff", "door_group": "north-staff", "passes_used": 0,
            "pass_lasts": "entry", "created_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        let north = SiteDoors::of(&store, "north").await.unwrap();
        assert!(north.grant(&grant), "through its door group");
        let groups = store.groups().await.unwrap();
        let listed: Vec<&str> =
            groups.iter().filter(|g| north.group(g, std::slice::from_ref(&grant))).map(|g| g.id.as_str()).collect();
        assert_eq!(listed, ["everyone", "main-staff", "north-staff"], "main-staff holds a grant to north");
    }
}
