//! Lockdown, for a whole site or chosen doors, in one action: every credential is refused
//! (reason `lockdown`) but those of people exempt from it, over unlock schedules and
//! holds; controllers get it in their signed offline lists, so one cut off from lintel
//! keeps it. Lifting it restores each door's mode. Kept on the doors in the store, so
//! every node's index follows it as any change of a door.

use std::sync::Arc;

use lintel_store::LockdownScope;

use crate::directory::{Actor, Directory};
use crate::error::{Result, ServiceError};
use crate::{site_limits, validate};

/// At most this many doors named in one call.
const MAX_DOORS: usize = 1000;

/// Puts the scope's doors in lockdown (`on`) or lifts it; answers the doors that changed.
pub async fn set(directory: &Arc<Directory>, by: &Actor, scope: LockdownScope, on: bool) -> Result<Vec<String>> {
    match &scope {
        LockdownScope::Site(site) => {
            validate::id("site", site)?;
            if by.site().is_some_and(|own| own != site) {
                site_limits::everywhere(by.site(), "a lockdown of another site")?;
            }
        }
        LockdownScope::Doors(doors) => {
            if doors.is_empty() || doors.len() > MAX_DOORS {
                return Err(ServiceError::invalid(format!("name 1 to {MAX_DOORS} doors, or a site")));
            }
            doors.iter().try_for_each(|door| validate::id("a door", door))?;
            site_limits::doors_within(&directory.store, by.site(), doors.iter().map(String::as_str)).await?;
        }
    }
    Ok(directory.write(by, move |store| async move { store.set_lockdown(&scope, on).await }).await?.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lintel_proto::{NewDoor, NewGrant, NewPerson, Reason};

    #[tokio::test]
    async fn a_lockdown_refuses_all_but_the_exempt_until_it_is_lifted() {
        let (_dir, store) = crate::testing::store().await;
        let directory = Directory::open(store.clone(), std::time::Duration::from_secs(3600)).await.unwrap();
        let by = Actor::cli();
        let door: NewDoor = serde_json::from_value(serde_json::json!({"id": "front", "name": "Front"})).unwrap();
        directory.create_door(&by, door).await.unwrap();
        for (id, exempt) in [("ann", false), ("sam", true)] {
            let attributes = serde_json::json!({"lockdown_exempt": exempt});
            let person = NewPerson {
                id: Some(id.into()),
                name: id.into(),
                attributes: attributes.as_object().cloned().unwrap(),
                ..NewPerson::default()
            };
            directory.create_person(&by, person).await.unwrap();
            let grant =
                NewGrant { person_id: Some(id.into()), doors: Some(vec!["front".into()]), ..NewGrant::default() };
            directory.create_grant(&by, grant).await.unwrap();
        }
        let (ann, sam) =
            (store.person_pk("ann").await.unwrap().unwrap(), store.person_pk("sam").await.unwrap().unwrap());
        let decide = |pk| directory.index().decide_for_person("front", pk, chrono::Utc::now()).reason;
        let (ann, sam) = (move || decide(ann), move || decide(sam));
        assert_eq!((ann(), sam()), (Reason::Granted, Reason::Granted));
        let site = LockdownScope::Site("main".into());
        assert_eq!(set(&directory, &by, site.clone(), true).await.unwrap(), ["front"]);
        assert_eq!((ann(), sam()), (Reason::Lockdown, Reason::Granted));
        assert!(set(&directory, &by, site.clone(), true).await.unwrap().is_empty(), "already");
        let stored = store.door("front").await.unwrap();
        assert_eq!((stored.state.mode.as_str(), stored.state.lockdown_by.as_deref()), ("lockdown", Some("cli")));
        assert_eq!(set(&directory, &by, LockdownScope::Doors(vec!["front".into()]), false).await.unwrap(), ["front"]);
        assert_eq!(ann(), Reason::Granted, "lifted");
        assert_eq!(store.door("front").await.unwrap().state.mode, "secure");
        // Bad input changes nothing.
        assert!(set(&directory, &by, LockdownScope::Doors(Vec::new()), true).await.is_err());
        assert!(set(&directory, &by, LockdownScope::Doors(vec!["nowhere".into()]), true).await.is_err());
        assert!(set(&directory, &by, LockdownScope::Site("nowhere".into()), true).await.is_err());
        let north = Actor::token("north").limited_to(Some("north".into()));
        assert!(set(&directory, &north, site, true).await.is_err(), "another site's");
        assert_eq!(ann(), Reason::Granted);
    }
}
