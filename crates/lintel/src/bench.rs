//! `lintel bench`: prints the figures the foundation issue asks for.

#[derive(clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
