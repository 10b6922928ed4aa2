//! Output: JSON for programs, comfy-table tables and key/value layouts for people, colours
//! (`--color`, `NO_COLOR`), timestamps, logging.
//!
//! Everything goes through [`Ui`], which writes to stdout and returns I/O errors (so a broken
//! pipe ends the command quietly instead of panicking like `println!`). Diagnostics and
//! confirmations go to stderr.

use std::io::{self, IsTerminal, Write};

use comfy_table::{Cell, Color, ContentArrangement, Table, presets};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// `--color` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ColorArg {
    /// Colours when writing to a terminal and `NO_COLOR` is not set.
    #[default]
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// `--log-format` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields), for a log collector.
    Json,
}

/// Whether stdout and stderr get colours.
#[derive(Clone, Copy, Debug)]
pub struct ColorChoice {
    /// Colour stdout.
    pub stdout: bool,
    /// Colour stderr.
    pub stderr: bool,
}

impl ColorChoice {
    /// Resolves `--color` against the terminal and `NO_COLOR` (any non-empty value).
    pub fn resolve(arg: ColorArg) -> ColorChoice {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        match arg {
            ColorArg::Always => ColorChoice {
                stdout: true,
                stderr: true,
            },
            ColorArg::Never => ColorChoice {
                stdout: false,
                stderr: false,
            },
            ColorArg::Auto => ColorChoice {
                stdout: !no_color && io::stdout().is_terminal(),
                stderr: !no_color && io::stderr().is_terminal(),
            },
        }
    }
}

/// Installs the `RUST_LOG` subscriber (stderr; default `warn`).
pub fn init_logging(color: bool, format: LogFormat) {
    // With JSON logs, the daemon's own lines (target `intercity`) are log events: kept.
    let default = match format {
        LogFormat::Text => "warn",
        LogFormat::Json => "warn,intercity=info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    let _ = match format {
        LogFormat::Text => logs.with_ansi(color).try_init(),
        LogFormat::Json => logs
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

/// The output channel of a command.
#[derive(Clone, Copy, Debug)]
pub struct Ui {
    json: bool,
    color: ColorChoice,
}

impl Ui {
    /// An output channel; `json` selects JSON on stdout.
    pub fn new(json: bool, color: ColorChoice) -> Ui {
        Ui { json, color }
    }

    /// Whether stdout gets colours.
    pub fn colours(&self) -> bool {
        self.color.stdout
    }

    /// Whether `--json` was given.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints a value as pretty JSON.
    pub fn json(&self, value: &impl Serialize) -> io::Result<()> {
        let mut out = io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, value).map_err(io::Error::from)?;
        writeln!(out)?;
        out.flush()
    }

    /// Prints one line of text.
    pub fn line(&self, text: impl std::fmt::Display) -> io::Result<()> {
        let mut out = io::stdout().lock();
        writeln!(out, "{text}")?;
        out.flush()
    }

    /// Prints a confirmation or a note to stderr (never part of the output proper).
    pub fn note(&self, text: impl std::fmt::Display) {
        let _ = writeln!(io::stderr().lock(), "{text}");
    }

    /// A progress bar of `total` `unit`s on stderr; hidden when stderr is not a terminal or
    /// with --json.
    pub fn progress(&self, total: u64, unit: &str) -> ProgressBar {
        if self.json || !io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template("[{bar:30}] {pos}/{len} {msg} ({eta} left)")
        {
            bar.set_style(style.progress_chars("#>."));
        }
        bar.set_message(unit.to_string());
        bar
    }

    /// A spinner with a message on stderr, for waits of unknown length; hidden like
    /// [`Ui::progress`].
    pub fn spinner(&self, message: &str) -> ProgressBar {
        if self.json || !io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new_spinner();
        bar.set_message(message.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    }

    /// A new table with the house style and a header row.
    pub fn table(&self, header: &[&str]) -> Table {
        let mut t = Table::new();
        t.load_preset(presets::UTF8_FULL_CONDENSED)
            .apply_modifier(comfy_table::modifiers::UTF8_ROUND_CORNERS)
            .set_content_arrangement(ContentArrangement::Dynamic);
        if self.color.stdout {
            t.enforce_styling();
        } else {
            t.force_no_tty();
        }
        t.set_header(
            header
                .iter()
                .map(|h| Cell::new(h).add_attribute(comfy_table::Attribute::Bold)),
        );
        t
    }

    /// A cell coloured when colours are on.
    pub fn cell(&self, text: impl ToString, color: Color) -> Cell {
        let cell = Cell::new(text.to_string());
        if self.color.stdout {
            cell.fg(color)
        } else {
            cell
        }
    }

    /// Prints a table.
    pub fn print_table(&self, table: &Table) -> io::Result<()> {
        self.line(table)
    }

    /// Text coloured when colours are on.
    pub fn paint(&self, text: &str, color: Color) -> String {
        if !self.color.stdout {
            return text.to_string();
        }
        let code = match color {
            Color::Red => "31",
            Color::Green => "32",
            Color::Yellow => "33",
            Color::Cyan => "36",
            _ => "1",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    /// Prints `key  value` lines, keys aligned; empty values are left out; a multi-line value
    /// continues indented under its first line.
    pub fn fields(&self, rows: &[(&str, String)]) -> io::Result<()> {
        let width = rows
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = io::stdout().lock();
        for (key, value) in rows.iter().filter(|(_, v)| !v.is_empty()) {
            let key = self.paint(&format!("{key:<width$}"), Color::Cyan);
            let mut lines = value.lines();
            writeln!(out, "{key}  {}", lines.next().unwrap_or_default())?;
            for line in lines {
                writeln!(out, "{:width$}  {line}", "")?;
            }
        }
        out.flush()
    }

    /// A ✓ or ✗, coloured.
    pub fn check(&self, ok: bool) -> Cell {
        if ok {
            self.cell("✓", Color::Green)
        } else {
            self.cell("✗", Color::Red)
        }
    }
}

/// A list shown on one line.
pub fn list(items: &[String]) -> String {
    items.join(", ")
}

/// A list shown one item a line, each with a bullet.
pub fn bullets(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("• {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A timestamp (ms since the epoch) in UTC ISO 8601, e.g. `2017-02-23T09:30:00Z`.
pub fn iso8601(ms: i64) -> String {
    intercity_node::time::iso8601(ms)
}

/// The shortest prefix length (at least `min`) at which every id in `ids` is distinct.
pub fn unique_prefix_len(ids: &[&str], min: usize) -> usize {
    let max = ids.iter().map(|i| i.len()).max().unwrap_or(min).max(min);
    (min..max)
        .find(|&n| {
            let mut seen: Vec<&str> = ids.iter().map(|i| &i[..n.min(i.len())]).collect();
            seen.sort_unstable();
            seen.windows(2).all(|w| w[0] != w[1])
        })
        .unwrap_or(max)
}

/// `id` cut to `len` characters.
pub fn short(id: &str, len: usize) -> &str {
    &id[..len.min(id.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_487_842_200_000), "2017-02-23T09:30:00Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(-1000), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn prefixes() {
        assert_eq!(unique_prefix_len(&["abcdef01", "abcdef02"], 4), 8);
        assert_eq!(unique_prefix_len(&["abcd1111", "abce2222"], 2), 4);
        assert_eq!(unique_prefix_len(&["ab12"], 8), 8);
        assert_eq!(unique_prefix_len(&[], 8), 8);
        assert_eq!(short("abcdef", 4), "abcd");
    }
}
