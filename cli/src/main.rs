//! `intercity`: the command-line client of an Intercity city node.
//!
//! The binary is thin: the `intercity-node` library carries the logic (store, signing,
//! validation); this crate parses arguments, calls the library and prints the result.
//!
//! # Layout
//!
//! - [`commands`] — the clap definitions and dispatch; one module per command group under
//!   `commands/` (`init`, `whoami`, `practice`, `project`, `group`, `agenda`, `history`,
//!   `completions`).
//! - [`input`] — parsers of flag values (dates, `NAME:SECTOR` partners, figures, positions) and
//!   `--from-file` JSON.
//! - [`ui`] — output: JSON, comfy-table tables, key/value layouts, colours, timestamps.
//! - [`error`] — CLI-level errors and the mapping of every error to a stable exit code.

mod commands;
mod error;
mod input;
mod ui;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    intercity_node::without_huge_pages();
    // clap prints usage errors itself and exits with code 2.
    let cli = commands::Cli::parse();
    let color = ui::ColorChoice::resolve(cli.global.color);
    ui::init_logging(color.stderr, cli.global.log_format);
    let json_logs = cli.global.log_format == ui::LogFormat::Json;
    match commands::run(cli, color) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => error::report(&err, color.stderr, json_logs),
    }
}
