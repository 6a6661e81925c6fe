//! The printer: results to stdout (human text or one JSON document), everything else to
//! stderr. Colour only where wanted (`--color`, `NO_COLOR`, terminals); progress only on a
//! terminal, so CI logs stay clean and JSON on stdout stays parseable.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicI8, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Map, Value};

use crate::cli::{ColorChoice, OutputFormat};
use crate::error::Error;

/// The result of a command, ready for either output format.
#[derive(Debug, Clone)]
pub struct Report {
    /// The subcommand name (`"command"` in JSON).
    pub command: &'static str,
    /// The JSON body beyond `schema_version` and `command`.
    pub body: Map<String, Value>,
    /// The human-readable rendering.
    pub text: String,
    /// The process exit code (0, or 3 for doctor failures / pending changes).
    pub exit_code: i32,
    /// Printed as-is in both formats (completion scripts, converted YAML on stdout).
    pub raw: bool,
}

impl Report {
    /// A report whose stdout is the same text in every format.
    pub fn raw(command: &'static str, text: String) -> Self {
        Report { command, body: Map::new(), text, exit_code: 0, raw: true }
    }

    /// The stable JSON document (`schema_version` 1).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("schema_version".into(), json!(1));
        m.insert("command".into(), json!(self.command));
        for (k, v) in &self.body {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }
}

/// Settings for everything printed.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// stdout format.
    pub format: OutputFormat,
    /// -q count minus -v count, for stderr chatter.
    pub verbosity: i8,
}

/// Decide whether colour is on for a stream, following `--color` and `NO_COLOR`.
pub fn color_enabled(choice: ColorChoice, is_terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    }
}

/// Apply the colour choice to both streams (console's styles then honour it everywhere).
pub fn init_colors(choice: ColorChoice) {
    console::set_colors_enabled(color_enabled(choice, std::io::stdout().is_terminal()));
    console::set_colors_enabled_stderr(color_enabled(choice, std::io::stderr().is_terminal()));
}

impl Output {
    /// Print a result to stdout.
    pub fn print(&self, report: &Report) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        if report.raw {
            out.write_all(report.text.as_bytes())?;
        } else {
            match self.format {
                OutputFormat::Json => {
                    serde_json::to_writer_pretty(&mut out, &report.to_json())?;
                    writeln!(out)?;
                }
                OutputFormat::Text => out.write_all(report.text.as_bytes())?,
            }
        }
        out.flush()
    }

    /// Print a failure: in text to stderr as `error:` / `caused by:` / `hint:`; with `-o json`
    /// also as the contract's error document on stdout, so a script always gets one document.
    pub fn print_error(&self, command: &str, e: &Error) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{} {}", console::style("error:").red().bold(), e.message);
        if let Some(c) = &e.cause {
            let _ = writeln!(err, "  caused by: {c}");
        }
        if let Some(h) = &e.hint {
            let _ = writeln!(err, "{} {h}", console::style("hint:").cyan().bold());
        }
        if self.format == OutputFormat::Json {
            let doc = json!({
                "schema_version": 1,
                "command": command,
                "error": {"kind": e.kind, "message": e.to_string(), "hint": e.hint},
            });
            let mut out = std::io::stdout().lock();
            let _ = serde_json::to_writer_pretty(&mut out, &doc);
            let _ = writeln!(out);
        }
    }
}

/// A document diff ([`crate::diff`]) for the text output: each line indented under the row it
/// belongs to, removals red and additions green where colour is on.
pub fn diff_text(diff: &str, indent: usize) -> String {
    let mut out = String::new();
    for line in diff.lines() {
        let styled = match line.as_bytes().first() {
            Some(b'-') => console::style(line).red(),
            Some(b'+') => console::style(line).green(),
            _ => console::style(line).dim(),
        };
        let _ = writeln!(out, "{:indent$}{styled}", "");
    }
    out
}

/// -v count minus -q count, set once by the binary; library callers (tests) keep the default.
static VERBOSITY: AtomicI8 = AtomicI8::new(0);

/// Set how chatty stderr is (`-v` raises, `-q` lowers).
pub fn set_verbosity(v: i8) {
    VERBOSITY.store(v, Ordering::Relaxed);
}

/// A warning on stderr (silenced by -qq).
pub fn warn(msg: &str) {
    if VERBOSITY.load(Ordering::Relaxed) > -2 {
        eprintln!("{} {msg}", console::style("warning:").yellow().bold());
    }
}

/// A progress line on stderr (silenced by -q); drawn above `bar` without tearing it.
pub fn progress(bar: &ProgressBar, msg: &str) {
    if VERBOSITY.load(Ordering::Relaxed) >= 0 {
        bar.suspend(|| eprintln!("{msg}"));
    }
}

/// Ask the person at the terminal, off the async threads (dialoguer blocks). Callers check that
/// there is a terminal first: karpctl never prompts without one.
pub async fn ask<T: Send + 'static>(
    prompt: impl FnOnce() -> dialoguer::Result<T> + Send + 'static,
) -> crate::error::Result<T> {
    use crate::error::{Error, ErrorKind};
    let failed = |e: String| Error::new(ErrorKind::Refused, "the confirmation prompt failed").with_cause(e);
    tokio::task::spawn_blocking(prompt).await.map_err(|e| failed(e.to_string()))?.map_err(|e| failed(e.to_string()))
}

/// A spinner on stderr, drawn only when stderr is a terminal; elsewhere it stays silent and the
/// caller's log lines carry the progress.
pub fn spinner(msg: &str) -> ProgressBar {
    let pb = if std::io::stderr().is_terminal() {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
    };
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
        pb.set_style(style);
    }
    pb.enable_steady_tick(std::time::Duration::from_millis(100));
    pb.set_message(msg.to_string());
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_document_has_schema_version_and_command_first() {
        let mut r = Report::raw("render", String::new());
        r.raw = false;
        r.body.insert("documents".into(), json!([]));
        let v = r.to_json();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["schema_version", "command", "documents"]);
    }

    #[test]
    fn colour_choice() {
        assert!(color_enabled(ColorChoice::Always, false));
        assert!(!color_enabled(ColorChoice::Never, true));
        assert!(!color_enabled(ColorChoice::Auto, false));
    }
}
