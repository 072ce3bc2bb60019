//! Anti-passback: a person who entered a zone must leave it before entering again. The
//! rule is pure; the store keeps who is inside and applies it in the same transaction
//! that records the decision, so that two readers (or two nodes) cannot both let one
//! card in twice.

/// The detail of a refusal (reason `anti_passback`).
pub const ENTERED_ALREADY: &str = "entered this zone and has not left it since";

/// How a zone treats a second entry without an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// Refused (reason `anti_passback`).
    Hard,
    /// Let in, and an alarm raised.
    Soft,
}

impl Strictness {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hard => "hard",
            Self::Soft => "soft",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Hard, Self::Soft].into_iter().find(|m| m.as_str() == s)
    }
}

/// Which way a door's reader leads, for its zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Entry,
    Exit,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Entry => "entry",
            Self::Exit => "exit",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Entry, Self::Exit].into_iter().find(|d| d.as_str() == s)
    }
}

/// A door's place in a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneDoor {
    pub strictness: Strictness,
    pub direction: Direction,
    /// After this long (µs) since their last passage a person counts as outside again.
    pub reset_micros: i64,
}

/// What lintel knows of a person in a zone: their last passage, in or out, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    pub inside: bool,
    pub at: i64,
}

/// What an allowed passage at `at` does in the zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passage {
    /// In order: recorded as their new presence.
    Passes(Presence),
    /// A second entry in a hard zone: refused, nothing changes.
    Refused,
    /// A second entry in a soft zone: let in, recorded, and an alarm.
    Violation(Presence),
    /// Older than what is known of them (an offline upload arriving late): it changes
    /// nothing, nor is it judged against a later passage.
    Stale,
}

/// Judges a passage. An exit is never refused: people must always be able to leave
/// (an exit without a recorded entry simply records them outside).
pub fn judge(door: ZoneDoor, known: Option<Presence>, at: i64) -> Passage {
    if known.is_some_and(|k| k.at > at) {
        return Passage::Stale;
    }
    let inside = known.is_some_and(|k| k.inside && at - k.at < door.reset_micros);
    match door.direction {
        Direction::Exit => Passage::Passes(Presence { inside: false, at }),
        Direction::Entry if !inside => Passage::Passes(Presence { inside: true, at }),
        Direction::Entry => match door.strictness {
            Strictness::Hard => Passage::Refused,
            Strictness::Soft => Passage::Violation(Presence { inside: true, at }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000;

    fn door(strictness: Strictness, direction: Direction) -> ZoneDoor {
        ZoneDoor { strictness, direction, reset_micros: 12 * HOUR }
    }

    fn inside(at: i64) -> Option<Presence> {
        Some(Presence { inside: true, at })
    }

    #[test]
    fn a_second_entry_is_refused_in_a_hard_zone_and_alarmed_in_a_soft_one() {
        let entry = door(Strictness::Hard, Direction::Entry);
        assert_eq!(judge(entry, None, HOUR), Passage::Passes(Presence { inside: true, at: HOUR }));
        assert_eq!(judge(entry, inside(HOUR), 2 * HOUR), Passage::Refused);
        let soft = door(Strictness::Soft, Direction::Entry);
        assert_eq!(judge(soft, inside(HOUR), 2 * HOUR), Passage::Violation(Presence { inside: true, at: 2 * HOUR }));
    }

    #[test]
    fn an_exit_lets_them_enter_again_and_is_never_refused() {
        let exit = door(Strictness::Hard, Direction::Exit);
        assert_eq!(judge(exit, inside(HOUR), 2 * HOUR), Passage::Passes(Presence { inside: false, at: 2 * HOUR }));
        assert_eq!(judge(exit, None, HOUR), Passage::Passes(Presence { inside: false, at: HOUR }));
        let outside = Some(Presence { inside: false, at: 2 * HOUR });
        let entry = door(Strictness::Hard, Direction::Entry);
        assert_eq!(judge(entry, outside, 3 * HOUR), Passage::Passes(Presence { inside: true, at: 3 * HOUR }));
    }

    #[test]
    fn the_reset_time_forgives_by_itself() {
        let entry = door(Strictness::Hard, Direction::Entry);
        assert_eq!(judge(entry, inside(0), 12 * HOUR - 1), Passage::Refused);
        assert_eq!(judge(entry, inside(0), 12 * HOUR), Passage::Passes(Presence { inside: true, at: 12 * HOUR }));
    }

    #[test]
    fn a_late_upload_changes_nothing_newer() {
        let entry = door(Strictness::Soft, Direction::Entry);
        assert_eq!(judge(entry, inside(2 * HOUR), HOUR), Passage::Stale);
        assert_eq!(judge(door(Strictness::Hard, Direction::Exit), inside(2 * HOUR), HOUR), Passage::Stale);
    }

    #[test]
    fn names_round_trip() {
        for s in [Strictness::Hard, Strictness::Soft] {
            assert_eq!(Strictness::parse(s.as_str()), Some(s));
        }
        for d in [Direction::Entry, Direction::Exit] {
            assert_eq!(Direction::parse(d.as_str()), Some(d));
        }
        assert_eq!(Strictness::parse("HARD"), None);
    }
}
