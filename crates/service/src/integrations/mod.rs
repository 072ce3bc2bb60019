//! Every integration's workflow and worker: the systems lintel syncs people from, the
//! systems it reports to, and the devices it drives.

pub mod crm;
pub mod doorbell;
pub mod oidc;
pub mod slack;
