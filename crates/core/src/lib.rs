//! lintel's domain, pure and fast: credential keys, weekly schedules, and the decision
//! index (an immutable snapshot that answers "may this credential open this door now?").
//! Nothing here does I/O; the store builds the index and the server swaps it.

pub mod badge;
pub mod card_bits;
pub mod credential;
pub mod index;
pub mod modes;
pub mod offline;
pub mod passback;
pub mod roles;
pub mod schedule;

pub use credential::{CredentialKey, Digest, KeyError};
pub use index::{
    Change, Consume, Decision, DoorSet, Index, IndexBuilder, IndexCredential, IndexDoor, IndexGrant, IndexGroup,
    IndexPerson, IndexStats, MemberQuery, OfflineDoors, PassGrant, Pk, Query, Subject, grant_allows, revocation_hash,
};
pub use lintel_proto::Reason;
pub use modes::{DoorConditions, Mode, Override, UnlockSchedule, Unlocked, mode_at};
pub use roles::{Action, Role, RoleAt};
pub use schedule::{CompiledSchedule, ScheduleError};
