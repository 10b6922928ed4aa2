//! `intercity completions`: shell completion scripts, generated from the clap definitions.

use clap::CommandFactory;
use clap_complete::Shell;

/// Help epilogue.
pub const HELP: &str = "\
Examples:
  intercity completions bash > ~/.local/share/bash-completion/completions/intercity
  intercity completions zsh > ~/.zfunc/_intercity
  intercity completions fish > ~/.config/fish/completions/intercity.fish";

/// `completions` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The shell
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Runs `completions`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut cmd = super::Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "intercity", &mut buf);
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(&buf)?;
    out.flush()?;
    Ok(())
}
