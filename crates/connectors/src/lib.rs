//! The other systems lintel talks to. One module per system; each speaks that system's
//! protocol and knows nothing of lintel's store: the server wires them to the directory.

pub mod cobot;
pub mod crm;
pub mod doorbell;
pub mod ldap;
pub mod lockcloud;
pub mod slack;
pub mod webhooks;
