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

/// Where a city's node runs as a service (docs/operations.md §3.4); `INTERCITY_SYSTEM_DATA_DIR`
/// names another.
const SYSTEM_DATA_DIR: &str = "/var/lib/intercity";

/// Refuses to create a second city on a machine whose node runs as a service, unless the data
/// directory was given: a city has one identity, and a staff member's `init` in their own home
/// directory would make another.
fn check_no_system_node(ctx: &Ctx, dir: &std::path::Path) -> anyhow::Result<()> {
    if ctx.explicit_dir {
        return Ok(());
    }
    let system = std::env::var_os("INTERCITY_SYSTEM_DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| SYSTEM_DATA_DIR.into());
    if system == dir || !system.is_dir() {
        return Ok(());
    }
    // Its directory is the service user's (mode 0700): unreadable from here means another
    // user's node; readable, it holds a city or it does not.
    let city = match std::fs::read_dir(&system) {
        Ok(_) => system.join("city.key").exists(),
        Err(e) => e.kind() == std::io::ErrorKind::PermissionDenied,
    };
    if !city {
        return Ok(());
    }
    Err(crate::error::CliError::Invalid(format!(
        "this machine's city node runs from {sys}: `init` here would create a second city, with another identity.          To use that node, ask its operator to add you as staff (`intercity staff --help`: a Unix group for the socket, or a staff key from your own machine), or run commands as its user (e.g. `sudo -u intercity intercity --data-dir {sys} status`);          to create a separate city anyway, give its directory with --data-dir",
        sys = system.display()
    ))
    .into())
}

/// Runs `init`.
pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let dir = ctx.data_dir()?;
    check_no_system_node(ctx, dir)?;
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
