#![no_main]
//! Card data as an OSDP reader sends it (`osdp_RAW`: a bit count, least significant byte
//! first, then the bits packed left-justified), which lintel turns into a card UID. Any
//! bytes must give a UID lintel accepts, or a refusal; never a panic.

use libfuzzer_sys::fuzz_target;
use lintel_core::card_bits::{MAX_BITS, uid_from_bits};
use lintel_core::credential::normalize_uid;

fuzz_target!(|input: &[u8]| {
    let Some((count, data)) = input.split_first_chunk::<2>() else { return };
    let bits = usize::from(u16::from_le_bytes(*count));
    match uid_from_bits(bits, data) {
        Ok(uid) => {
            let bytes = bits.div_ceil(8);
            assert_eq!(uid.len(), bytes * 2, "whole bytes, two hex digits each");
            assert_eq!(normalize_uid(&uid).ok().as_deref(), Some(uid.as_str()), "a UID lintel stores as it is");
            // Right-justified: the bits above the card's own are zero.
            let top = u8::from_str_radix(&uid[..2], 16).expect("hex");
            assert!(u32::from(top) < 1 << (8 - (bytes * 8 - bits)), "{bits} bits gave {uid}");
        }
        Err(_) => assert!(bits == 0 || bits > MAX_BITS || data.len() != bits.div_ceil(8)),
    }
});
