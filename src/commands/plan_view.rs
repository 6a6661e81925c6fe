//! The plan as people see it: one table of changes and one confirmation, shared by every
//! command that writes (init, upgrade, teardown) so they read alike and cannot drift apart.

use std::fmt::Write as _;

use crate::error::{Error, ErrorKind, Result};
use crate::output;
use crate::plan::{Action, Change};

/// Whether the table shows what will happen or what did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tense {
    /// `create`, `update`, …: a plan.
    Planned,
    /// `created`, `updated`, …: an outcome.
    Done,
}

/// What a planned action reads as once applied.
pub fn past(a: Action) -> &'static str {
    match a {
        Action::Create => "created",
        Action::Update => "updated",
        Action::Adopt => "adopted",
        Action::Delete => "deleted",
        Action::None => "unchanged",
        Action::Skip => "skipped",
    }
}

/// One line per resource (its action coloured by what it does), with the diff of each
/// document to update under it.
pub fn table(out: &mut String, changes: &[Change], tense: Tense) {
    let width = changes.iter().map(|c| c.resource.to_string().len()).max().unwrap_or(0);
    let verb = |a: Action| if tense == Tense::Planned { a.as_str() } else { past(a) };
    let verb_width = if tense == Tense::Planned { 6 } else { 9 };
    for ch in changes {
        let action = match ch.action {
            Action::Create => console::style(verb(ch.action)).green(),
            Action::Update | Action::Adopt => console::style(verb(ch.action)).yellow(),
            Action::Delete => console::style(verb(ch.action)).red(),
            Action::None | Action::Skip => console::style(verb(ch.action)).dim(),
        };
        let line = format!("  {action:<verb_width$}  {:<width$}  {}", ch.resource, ch.detail, width = width);
        let _ = writeln!(out, "{}", line.trim_end());
        if let Some(d) = &ch.diff {
            out.push_str(&output::diff_text(d, verb_width + 4));
        }
    }
}

/// How a command asks before its first write.
#[derive(Debug, Clone)]
pub enum Ask {
    /// A yes/no question (init, upgrade).
    YesNo {
        /// The question.
        prompt: String,
    },
    /// The user types this exact text (teardown: the cluster's name).
    Type {
        /// What must be typed.
        expected: String,
        /// The prompt.
        prompt: String,
    },
}

/// Ask before the first write; without a terminal, refuse (a CI job must say `--yes`).
/// `noun` names what is pending ("changes", "deletions"); `plan` is the table shown first.
pub async fn confirm(noun: &str, pending: usize, interactive: bool, plan: &str, ask: Ask) -> Result<()> {
    if !interactive {
        return Err(Error::new(
            ErrorKind::Refused,
            format!("{pending} {noun} need confirmation and there is no terminal to ask"),
        )
        .with_hint("review them with --dry-run, then run again with --yes"));
    }
    eprint!("{plan}");
    match ask {
        Ask::YesNo { prompt } => {
            let answer =
                output::ask(move || dialoguer::Confirm::new().with_prompt(prompt).default(false).interact()).await?;
            if answer {
                return Ok(());
            }
            Err(Error::new(ErrorKind::Refused, "not confirmed; nothing was changed")
                .with_hint("run again and answer yes, or pass --yes"))
        }
        Ask::Type { expected, prompt } => {
            let typed =
                output::ask(move || dialoguer::Input::<String>::new().with_prompt(prompt).interact_text()).await?;
            if typed.trim() == expected {
                return Ok(());
            }
            Err(Error::new(ErrorKind::Refused, "the name did not match; nothing was deleted")
                .with_hint("type the cluster name exactly, or pass --yes"))
        }
    }
}
