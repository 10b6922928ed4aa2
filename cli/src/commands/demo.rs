//! `intercity demo`: the local multi-city federation demo.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args as ClapArgs;
use intercity_node::demo::{self, DemoOptions};

use super::Ctx;
use crate::error::CliError;

/// Help epilogue.
pub const HELP: &str = "\
Starts the working group \"Smart Social Inclusion\" on this machine as city nodes (Milan hosting;
Bialystok, Brno, Katowice, Madrid, Nantes, Porto, Riga, Utrecht, Warsaw) with real libp2p on
127.0.0.1 and real RocksDB. Milan starts the federation EUROCITIES and invites the others; they
find each other in its address book. The last city joins by one invitation from Milan and is
reached by all the others with no operator action. Milan publishes
practices, projects and the 23-24 February 2017 study-visit agenda; Brno, Warsaw and Porto add
agenda items concurrently; a forged entry and an unauthorized edit are rejected. Exits 0 only
when every city converged.

Example:
  intercity demo
  intercity demo --cities 5 --keep /tmp/federation
  intercity --data-dir /tmp/federation/milan practice list";

/// `demo` options.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Number of cities
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(2..=64))]
    pub cities: u16,
    /// Keep the cities' data directories here (to inspect them with the CLI afterwards)
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// Seed of the cities' keys
    #[arg(long, default_value_t = 2017)]
    pub seed: u64,
    /// Give up after this many seconds
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

/// Runs `demo`.
pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    if let Some(dir) = &args.keep
        && dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    {
        return Err(CliError::Invalid(format!(
            "{} is not empty; choose a new directory for --keep",
            dir.display()
        ))
        .into());
    }
    let opts = DemoOptions {
        cities: usize::from(args.cities),
        keep: args.keep,
        seed: args.seed,
        timeout: Duration::from_secs(args.timeout),
    };
    let json = ctx.ui.is_json();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(demo::run(opts, |line| {
        if !json {
            println!("{line}");
        }
    }))?;
    if json {
        ctx.ui.json(&report)?;
    } else {
        let mut table = ctx.ui.table(&[
            "city",
            "records",
            "accepted",
            "rejected",
            "agenda items",
            "peers",
            "converged",
        ]);
        for c in &report.cities {
            table.add_row(vec![
                ctx.ui.cell(&c.name, comfy_table::Color::Reset),
                ctx.ui.cell(c.records, comfy_table::Color::Reset),
                ctx.ui.cell(c.accepted, comfy_table::Color::Reset),
                ctx.ui.cell(c.rejected, comfy_table::Color::Reset),
                ctx.ui.cell(c.agenda_items, comfy_table::Color::Reset),
                ctx.ui.cell(c.peers, comfy_table::Color::Reset),
                ctx.ui.check(c.converged),
            ]);
        }
        ctx.ui.print_table(&table)?;
        println!(
            "{} in {} ms",
            if report.converged {
                "all cities converged"
            } else {
                "NOT converged"
            },
            report.convergence_ms
        );
    }
    if report.converged {
        Ok(())
    } else {
        Err(anyhow::anyhow!("the cities did not converge in time"))
    }
}
