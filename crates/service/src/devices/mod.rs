//! The devices lintel hears from on links of their own: MQTT door controllers (their taps,
//! allow-lists and uploads) and OSDP readers (their cards and keypads). Opening a door, on any link,
//! goes through [`crate::doors`].

pub mod controllers;
mod keypad;
pub mod osdp;
