//! `intercity init`: create the city of this node.

use intercity_node::City;

use super::Ctx;

/// Help epilogue.
pub const HELP: &str = "\
Creates <data dir>/city.key (the secret key, mode 0600: back it up), city.json and the store.
Refuses to touch a directory that already holds a city.

Example:
  intercity init --city Milan --country IT";

/// `init` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The city's display name, e.g. Milan
    #[arg(long, value_name = "NAME")]
    pub city: String,
    /// ISO 3166 alpha-2 country code, e.g. IT
    #[arg(long, value_name = "CODE")]
    pub country: Option<String>,
}

/// Runs `init`.
pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let dir = ctx.data_dir()?;
    let city = City::init(dir, &args.city, args.country.as_deref())?;
    let name = city.profile().name.clone();
    super::whoami::print(ctx, &intercity_node::Client::Local(city))?;
    if !ctx.ui.is_json() {
        ctx.ui.note(format!(
            "Created city {name} in {}; back up city.key",
            dir.display()
        ));
    }
    Ok(())
}
