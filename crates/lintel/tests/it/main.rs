//! lintel's integration tests: one binary, real `lintel serve` processes, real HTTP, on
//! SQLite and PostgreSQL.

mod harness;

mod bad_input;
mod cli;
mod cobot;
mod connections;
mod crm;
mod decisions;
mod doorbell;
mod doors;
mod events;
mod ldap;
mod lookup;
mod mqtt;
mod operations;
mod osdp;
mod security;
mod signed;
mod slack;
mod stations;
mod work;
