//! Digits typed at a reader's keypad, gathered into entries. A reader sends keys as they
//! are pressed; an entry ends with `#` and is then decided (a PIN, or a backup code's 20
//! digits). `*` clears what was typed. Digits left more than [`FORGET_AFTER`] without
//! another key are forgotten, so that half an entry never prefixes the next person's.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long typed digits wait for the next key.
pub const FORGET_AFTER: Duration = Duration::from_secs(10);
/// The longest entry kept (a backup code is 20 digits); longer ones are dropped whole.
const MAX_DIGITS: usize = 32;

/// OSDP's keypad codes for `*` and `#` (the ASCII characters are taken too).
const STAR: [u8; 2] = [0x7F, b'*'];
const HASH: [u8; 2] = [0x0D, b'#'];

struct Typing {
    digits: String,
    last_key: Instant,
    /// Longer than [`MAX_DIGITS`]: nothing is decided until `#` or `*` starts afresh.
    overflowed: bool,
}

/// The entries being typed, per reader.
#[derive(Default)]
pub struct Keypads {
    typing: HashMap<String, Typing>,
}

impl Keypads {
    /// Takes the keys `reader` sent at `now`; returns the entries they completed, in order.
    pub fn keys(&mut self, reader: &str, keys: &[u8], now: Instant) -> Vec<String> {
        let t = self.typing.entry(reader.to_owned()).or_insert_with(|| Typing {
            digits: String::new(),
            last_key: now,
            overflowed: false,
        });
        if now.duration_since(t.last_key) > FORGET_AFTER {
            t.digits.clear();
            t.overflowed = false;
        }
        t.last_key = now;
        let mut entries = Vec::new();
        for &key in keys {
            if key.is_ascii_digit() {
                t.overflowed |= t.digits.len() >= MAX_DIGITS;
                if !t.overflowed {
                    t.digits.push(char::from(key));
                }
            } else if HASH.contains(&key) {
                let digits = std::mem::take(&mut t.digits);
                if !std::mem::take(&mut t.overflowed) && !digits.is_empty() {
                    entries.push(digits);
                }
            } else if STAR.contains(&key) {
                t.digits.clear();
                t.overflowed = false;
            } else {
                tracing::debug!(reader, key, "keypad key ignored");
            }
        }
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_end_with_hash_and_star_clears() {
        let mut k = Keypads::default();
        let now = Instant::now();
        assert!(k.keys("r", b"12", now).is_empty(), "not ended yet");
        assert_eq!(k.keys("r", b"34\r", now), ["1234"], "OSDP's # ends it");
        assert_eq!(k.keys("r", b"99\x7f5678#", now), ["5678"], "OSDP's * clears");
        assert_eq!(k.keys("r", b"1#2#", now), ["1", "2"]);
        assert!(k.keys("r", b"#", now).is_empty(), "nothing typed, nothing decided");
        assert_eq!(k.keys("other", b"4321#", now), ["4321"], "per reader");
    }

    #[test]
    fn digits_are_forgotten_after_a_pause_and_overlong_entries_dropped() {
        let mut k = Keypads::default();
        let now = Instant::now();
        k.keys("r", b"12", now);
        assert_eq!(k.keys("r", b"34#", now + FORGET_AFTER + Duration::from_secs(1)), ["34"]);
        let long = "1".repeat(MAX_DIGITS + 1);
        assert!(k.keys("r", format!("{long}#").as_bytes(), now).is_empty());
        assert_eq!(k.keys("r", b"20#", now), ["20"], "the next entry starts afresh");
    }
}
