//! `intercity whoami`: this node's city.

use intercity_node::Client;

use super::Ctx;

/// Help epilogue.
pub const HELP: &str = "\
Example:
  intercity whoami
  intercity whoami --json | jq -r .id";

/// Runs `whoami`.
pub fn run(ctx: &Ctx) -> anyhow::Result<()> {
    print(ctx, &ctx.open_read()?)
}

/// Prints a city's profile and data directory.
pub fn print(ctx: &Ctx, city: &Client) -> anyhow::Result<()> {
    let p = city.profile();
    let dir = city.dir().display().to_string();
    if ctx.ui.is_json() {
        ctx.ui.json(&serde_json::json!({
            "id": p.id.to_string(),
            "name": p.name,
            "country": p.country,
            "data_dir": dir,
        }))?;
    } else {
        ctx.ui.fields(&[
            ("id", p.id.to_string()),
            ("name", p.name.clone()),
            ("country", p.country.clone().unwrap_or_default()),
            ("data dir", dir),
        ])?;
    }
    Ok(())
}
