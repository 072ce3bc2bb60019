//! Backup codes (`lintel backup-codes --door front --count 10`): single-use codes for the day the chat
//! workspace or the internet is gone. They belong to a person of their own per door
//! (`backup-<door>`), whose one grant is that door, so revoking them is one DELETE.

use lintel_proto::NewPerson;
use lintel_store::{NewGrantRecord, Store, StoreError};

use crate::error::{Result, ServiceError};

/// Issues `count` (1 to 100) new codes for `door` and returns them, to be shown once.
pub async fn issue(store: &Store, door: &str, count: u32) -> Result<Vec<String>> {
    if !(1..=100).contains(&count) {
        return Err(ServiceError::invalid("the count of backup codes is 1 to 100"));
    }
    let door = store.door(door).await?;
    let holder = format!("backup-{}", door.id);
    match store.person(&holder).await {
        Ok(_) => {}
        Err(StoreError::NotFound { .. }) => {
            let person = NewPerson { name: format!("Backup codes for {}", door.name), ..Default::default() };
            store.create_person(&person, &holder).await?;
        }
        Err(e) => return Err(e.into()),
    }
    let grants = store.grants(Some(&holder)).await?;
    if !grants.iter().any(|g| g.doors.as_deref() == Some(std::slice::from_ref(&door.id))) {
        let grant = NewGrantRecord {
            person_id: Some(holder.clone()),
            doors: Some(vec![door.id.clone()]),
            source: Some("backup-codes".into()),
            ..Default::default()
        };
        store.create_grant(&grant).await?;
    }
    let built: Vec<_> = (0..count).map(|_| crate::credentials::backup_code()).collect();
    let codes: Vec<String> = built.iter().filter_map(|b| b.shown_once.clone()).collect();
    let records: Vec<_> = built.into_iter().map(|b| b.record).collect();
    // One transaction: a running server sees all the printed codes at once, or none.
    store.issue_credentials(&holder, &records).await?;
    Ok(codes)
}
