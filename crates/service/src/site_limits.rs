//! Operators limited to one site (a building's own admin or front desk in a chain of
//! spaces). The people are shared by every site (a member may use any of them), so
//! people, their credentials and their details are managed as the role allows; what
//! gives or takes access to doors (groups, memberships, grants, guest passes,
//! enrolments), the doors themselves and opening them are theirs only at their site. Every
//! write that concerns doors asks here, whichever front-end it came from.

use std::collections::BTreeSet;

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
    let doors: BTreeSet<&str> = doors.into_iter().collect();
    if doors.is_empty() {
        return Ok(());
    }
    let elsewhere: BTreeSet<String> =
        store.doors(None).await?.into_iter().filter(|d| d.site != site).map(|d| d.id).collect();
    match doors.into_iter().find(|door| elsewhere.contains(*door)) {
        Some(door) => Err(refused(site, format!("the door {door:?} is not at your site"))),
        None => Ok(()),
    }
}

/// The doors a grant concerns: its own, or its door group's.
async fn grant_doors(store: &Store, doors: Option<&[String]>, door_group: Option<&str>) -> Result<Vec<String>> {
    let mut all = doors.map(<[String]>::to_vec).unwrap_or_default();
    if let Some(group) = door_group {
        match store.group(group).await {
            Ok(g) => all.extend(g.doors),
            // The write itself answers for a group that does not exist.
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(all)
}

/// Refuses a grant (its doors or its door group's) beyond the site `limit`.
pub async fn grant_within(
    store: &Store,
    limit: Option<&str>,
    doors: Option<&[String]>,
    door_group: Option<&str>,
) -> Result<()> {
    if limit.is_none() {
        return Ok(());
    }
    let doors = grant_doors(store, doors, door_group).await?;
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
        doors.extend(grant_doors(store, grant.doors.as_deref(), grant.door_group.as_deref()).await?);
    }
    doors_within(store, limit, doors.iter().map(String::as_str)).await
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
        assert!(grant_within(&store, limited, None, Some("north-staff")).await.is_ok());
        assert!(grant_within(&store, limited, Some(&["m1".into()]), None).await.is_err());
        assert!(grant_within(&store, limited, None, Some("everyone")).await.is_err());
        assert!(everywhere(limited, "adding a site").is_err() && everywhere(whole, "adding a site").is_ok());
    }
}
