//! Door commands handed from the node that was asked to the node that holds the device
//! (see `migrations/*/0025_commands.sql`).

use crate::{Result, Store, now_micros};

/// A command for a device attached to one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoorCommand {
    pub id: String,
    pub device: String,
    pub door: String,
    pub seconds: Option<u32>,
    pub person_id: Option<String>,
}

/// Where a command stands, as the asking node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandState {
    Waiting,
    /// Taken by a node, not done yet.
    Taken,
    /// Done: what the device did, as its owner wrote it.
    Done(String),
    GivenUp,
}

type CommandRow = (String, String, String, Option<i64>, Option<String>);

fn command((id, device, door, seconds, person_id): CommandRow) -> DoorCommand {
    DoorCommand { id, device, door, seconds: seconds.and_then(|s| u32::try_from(s).ok()), person_id }
}

impl Store {
    /// Writes a command for the owner of its device to take.
    pub async fn ask_command(&self, command: &DoorCommand) -> Result<()> {
        sqlx::query(
            "INSERT INTO commands (id, device, door, seconds, person_id, asked_at, state) \
             VALUES ($1, $2, $3, $4, $5, $6, 'waiting')",
        )
        .bind(&command.id)
        .bind(&command.device)
        .bind(&command.door)
        .bind(command.seconds.map(i64::from))
        .bind(&command.person_id)
        .bind(now_micros())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Takes the commands waiting for `device` (each is taken by one node only).
    pub async fn take_commands(&self, device: &str) -> Result<Vec<DoorCommand>> {
        let rows: Vec<CommandRow> = sqlx::query_as(
            "UPDATE commands SET state = 'taken', taken_by = $1 WHERE device = $2 AND state = 'waiting' \
             RETURNING id, device, door, seconds, person_id",
        )
        .bind(self.node())
        .bind(device)
        .fetch_all(&self.write)
        .await?;
        Ok(rows.into_iter().map(command).collect())
    }

    /// Writes what the device did for a command this node took.
    pub async fn finish_command(&self, id: &str, outcome: &str) -> Result<()> {
        sqlx::query("UPDATE commands SET state = 'done', outcome = $1 WHERE id = $2 AND taken_by = $3")
            .bind(outcome)
            .bind(id)
            .bind(self.node())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn command_state(&self, id: &str) -> Result<Option<CommandState>> {
        let row: Option<(String, Option<String>)> = sqlx::query_as("SELECT state, outcome FROM commands WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|(state, outcome)| match (state.as_str(), outcome) {
            ("done", Some(outcome)) => CommandState::Done(outcome),
            ("waiting", _) => CommandState::Waiting,
            ("given_up", _) => CommandState::GivenUp,
            _ => CommandState::Taken,
        }))
    }

    /// Gives a command up unless a node took it already; whether it was given up.
    pub async fn give_up_command(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE commands SET state = 'given_up' WHERE id = $1 AND state = 'waiting'")
            .bind(id)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets commands asked before `before` (unix microseconds); how many.
    pub async fn forget_commands(&self, before: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM commands WHERE asked_at < $1").bind(before).execute(&self.write).await?;
        Ok(done.rows_affected())
    }
}
