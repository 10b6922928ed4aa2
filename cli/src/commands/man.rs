//! `intercity man`: the manual, generated from the same clap definitions as `--help` — man
//! pages (roff) for `man`, or the Markdown reference kept in `docs/cli.md`.

use std::io::Write;
use std::path::PathBuf;

use clap::CommandFactory;

/// Help epilogue.
pub const HELP: &str = "\
Examples:
  intercity man | man -l -
  intercity man --dir /usr/local/share/man/man1    # one page per command
  intercity man --markdown > docs/cli.md";

/// `man` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Write one page per command (intercity.1, intercity-practice-add.1, ...) into DIR
    #[arg(long, value_name = "DIR", conflicts_with = "markdown")]
    pub dir: Option<PathBuf>,
    /// Print the Markdown command reference (docs/cli.md) instead of a man page
    #[arg(long)]
    pub markdown: bool,
}

/// Width the reference is rendered at, so it is the same on every machine.
const WIDTH: usize = 100;

/// Runs `man`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let cmd = super::Cli::command().term_width(WIDTH);
    let mut out = std::io::stdout().lock();
    if args.markdown {
        out.write_all(markdown(cmd).as_bytes())?;
    } else if let Some(dir) = args.dir {
        std::fs::create_dir_all(&dir)?;
        clap_mangen::generate_to(cmd, &dir)?;
        writeln!(out, "{}", dir.display())?;
    } else {
        clap_mangen::Man::new(cmd).render(&mut out)?;
    }
    out.flush()?;
    Ok(())
}

/// The Markdown reference: every command's `--help`, in command-tree order.
pub fn markdown(cmd: clap::Command) -> String {
    let mut out = String::from(
        "# `intercity` command reference\n\n\
         Generated from the command definitions by `intercity man --markdown`; a test fails when\n\
         this file and `--help` differ (regenerate it with the command above).\n",
    );
    let mut cmd = cmd;
    cmd.build();
    walk(&cmd, "intercity", &mut out);
    out
}

fn walk(cmd: &clap::Command, path: &str, out: &mut String) {
    let mut c = cmd.clone();
    let help = c.render_long_help().to_string();
    out.push_str(&format!(
        "\n## `{path}`\n\n```text\n{}\n```\n",
        help.trim_end()
    ));
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" || sub.is_hide_set() {
            continue;
        }
        walk(sub, &format!("{path} {}", sub.get_name()), out);
    }
}
