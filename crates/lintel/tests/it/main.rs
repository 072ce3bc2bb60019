//! lintel's integration tests: one binary, real `lintel serve` processes, real HTTP, on
//! SQLite and PostgreSQL.

mod harness;

mod alarms;
mod audit;
mod backups;
mod bad_input;
mod cli;
mod cobot;
mod connections;
mod crash;
mod crm;
mod decisions;
mod door_modes;
mod doorbell;
mod doors;
mod enrolments;
mod events;
mod faults;
mod guests;
mod ldap;
mod ldap_sync;
mod lockdown;
mod lookup;
mod mqtt;
mod nodes;
mod offline_codes;
mod operations;
mod osdp;
mod replay;
mod retention;
mod roles;
mod scim;
mod security;
mod signed;
mod sites;
mod slack;
mod slapd;
mod stations;
mod webhooks;
mod work;
mod zones;
