//! Every integration's workflow and worker: the systems lintel syncs people from, the
//! systems it reports to, and the directories it asks.

pub mod cobot;
pub mod crm;
pub mod doorbell;
pub mod invitations;
pub mod ldap_sync;
pub mod lockcloud;
pub mod lookup;
pub mod oidc;
pub mod slack;
