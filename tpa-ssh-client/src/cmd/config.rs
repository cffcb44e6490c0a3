//! `tpa-ssh config`: shows the host patterns and bastion it will write into
//! the ssh_config snippet, asks before writing (or takes `--yes`), refuses
//! announced patterns that are broader than the CA's allowed suffixes allow
//! (issue 18: a CA announcing `github.com` or `*.com` would otherwise take
//! over unrelated SSH), and never changes the snippet's patterns silently:
//! a later run says what changed and how to accept it.

use std::io::IsTerminal as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use tpa_core::{BastionAddress, HostPattern, Username};

use crate::api::Announced;
use crate::cli::ConfigArgs;
use crate::local::ssh_config::{self, Changes, Snippet};
use crate::local::{dirs, keys, settings};
use crate::prompt;

/// What a run would write, next to what the snippet holds now.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    patterns: Vec<String>,
    bastion: Option<String>,
    allowed_suffixes: Vec<String>,
    /// The snippet's patterns and bastion now, when it exists.
    before: Option<ssh_config::Written>,
}

impl Plan {
    /// The lines shown before asking: what goes in, and what changes.
    fn describe(&self, snippet: &str) -> Vec<String> {
        let mut out = vec![format!("tpa-ssh config will write {snippet}:")];
        out.push(format!(
            "  hosts routed through TPA: {}",
            self.patterns.join(" ")
        ));
        out.push(match &self.bastion {
            Some(b) => format!(
                "  through the bastion:      {b} (alias {})",
                ssh_config::BASTION_ALIAS
            ),
            None => "  through the bastion:      none (direct)".to_owned(),
        });
        out.push(format!(
            "  domains the CA allows:    {}",
            if self.allowed_suffixes.is_empty() {
                "none (only single-label patterns such as web-*)".to_owned()
            } else {
                self.allowed_suffixes.join(", ")
            }
        ));
        if let Some(before) = &self.before {
            let added: Vec<&str> = self
                .patterns
                .iter()
                .filter(|p| !before.patterns.contains(p))
                .map(String::as_str)
                .collect();
            let removed: Vec<&str> = before
                .patterns
                .iter()
                .filter(|p| !self.patterns.contains(p))
                .map(String::as_str)
                .collect();
            out.push("Changes to the snippet you have now:".to_owned());
            if !added.is_empty() {
                out.push(format!("  + hosts added:   {}", added.join(" ")));
            }
            if !removed.is_empty() {
                out.push(format!("  - hosts removed: {}", removed.join(" ")));
            }
            if before.bastion != self.bastion {
                out.push(format!(
                    "  bastion: {} -> {}",
                    before.bastion.as_deref().unwrap_or("none"),
                    self.bastion.as_deref().unwrap_or("none")
                ));
            }
            if added.is_empty() && removed.is_empty() && before.bastion == self.bastion {
                out.push("  key or certificate paths, or the bastion login".to_owned());
            }
        }
        out.push(
            "For these hosts ssh uses the TPA key and certificate, and the bastion, ahead of your own Host blocks (docs/configuration.md, \"tpa-ssh config\").".to_owned(),
        );
        out
    }
}

/// The patterns to write: the user's own (`--host-pattern`, then
/// `config.toml`), else the CA's, which must stay within its allowed suffixes.
fn patterns(args: &ConfigArgs, announced: &Announced) -> anyhow::Result<Vec<HostPattern>> {
    let user_patterns = if args.host_patterns.is_empty() {
        settings::load()?.host_patterns
    } else {
        args.host_patterns.clone()
    };
    if !user_patterns.is_empty() {
        return user_patterns
            .iter()
            .map(|p| HostPattern::parse(p))
            .collect::<Result<Vec<_>, _>>()
            .context("bad host pattern (use lowercase host names and *, e.g. 'web-*')");
    }
    for p in &announced.patterns {
        p.check_bounds(&announced.allowed_suffixes).with_context(|| {
            format!(
                "the CA announces the host pattern {p}, which tpa-ssh will not write into your ssh configuration; nothing was written. Tell the CA's operator, or give your own patterns with `tpa-ssh config --host-pattern 'web-*'`"
            )
        })?;
    }
    if announced.patterns.is_empty() {
        bail!(
            "no host patterns: the CA announces none; give them with `tpa-ssh config --host-pattern 'web-*'` or host_patterns in {}",
            settings::path()?.display()
        );
    }
    Ok(announced.patterns.clone())
}

/// `tpa-ssh config`.
pub async fn run(ca: Option<&str>, args: ConfigArgs) -> anyhow::Result<ExitCode> {
    let (client, _) = super::logged_in(ca)?;
    let announced = client.announced().await?;
    let patterns = patterns(&args, &announced)?;
    let bastion: Option<&BastionAddress> = announced.bastion.as_ref();
    let bastion_login = args
        .bastion_login
        .as_deref()
        .map(Username::parse)
        .transpose()
        .context("--bastion-login")?;
    let (keys, _) = keys::to_certify()?;
    let text = ssh_config::render(&Snippet {
        patterns: &patterns,
        bastion,
        bastion_login: bastion_login.as_ref(),
        keys: &keys,
    })?;
    if args.print {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let ssh_dir = dirs::home()?.join(".ssh");
    let snippet = ssh_dir.join("tpa_config");
    let user_config = ssh_dir.join("config");
    let current = match std::fs::read_to_string(&snippet) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", snippet.display())),
    };
    if current.as_deref() != Some(text.as_str()) {
        let plan = Plan {
            patterns: patterns.iter().map(ToString::to_string).collect(),
            bastion: bastion.map(ToString::to_string),
            allowed_suffixes: announced
                .allowed_suffixes
                .iter()
                .map(ToString::to_string)
                .collect(),
            before: current.as_deref().map(ssh_config::written),
        };
        if !accepted(&plan, &snippet, args.yes)? {
            eprintln!("Nothing was written.");
            return Ok(ExitCode::from(1));
        }
    }
    let changes = ssh_config::install(&snippet, &user_config, &text)?;
    let names: Vec<&str> = patterns.iter().map(HostPattern::as_str).collect();
    if args.json.json {
        let out = serde_json::json!({
            "snippet": snippet, "config": user_config,
            "snippet_written": changes.snippet_written,
            "include_added": changes.include_added, "backup": changes.backup,
            "host_patterns": names,
            "bastion": bastion.map(ToString::to_string),
            "allowed_suffixes": announced.allowed_suffixes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_changes(&changes, &snippet, &user_config, &names);
    if let Some(b) = bastion {
        println!(
            "Hosts go through the bastion {b} (alias {}).",
            ssh_config::BASTION_ALIAS
        );
    }
    println!(
        "Now `ssh LOGIN@{}` works while you hold a grant (`tpa-ssh cert` renews the certificate).",
        names.first().map_or("HOST", |p| p).replace('*', "1")
    );
    Ok(ExitCode::SUCCESS)
}

/// Shows what `plan` writes into `snippet`; whether to go on: `--yes`, or
/// the person's answer on a terminal (without one, an error saying how to
/// accept it).
fn accepted(plan: &Plan, snippet: &Path, yes: bool) -> anyhow::Result<bool> {
    for line in plan.describe(&snippet.display().to_string()) {
        eprintln!("{line}");
    }
    if yes {
        return Ok(true);
    }
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !interactive {
        bail!("nothing was written: review the above and accept it with `tpa-ssh config --yes`");
    }
    prompt::confirm("Write it?")
}

/// What `install` changed, in words.
fn print_changes(changes: &Changes, snippet: &Path, user_config: &Path, names: &[&str]) {
    if !changes.snippet_written && !changes.include_added {
        println!("{} is up to date; nothing changed.", snippet.display());
        return;
    }
    if changes.snippet_written {
        println!("Wrote {} for {}.", snippet.display(), names.join(" "));
    }
    if let Some(b) = &changes.backup {
        println!("Backed up {} to {}.", user_config.display(), b.display());
    }
    if changes.include_added {
        println!(
            "Added an Include line at the top of {}.",
            user_config.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 18: a later run says what changed before it writes.
    #[test]
    fn the_plan_names_added_and_removed_hosts_and_a_new_bastion() {
        let plan = Plan {
            patterns: vec!["web-*".to_owned(), "db-*".to_owned()],
            bastion: Some("b2.example.com".to_owned()),
            allowed_suffixes: vec![],
            before: Some(ssh_config::Written {
                patterns: vec!["web-*".to_owned(), "old-*".to_owned()],
                bastion: Some("b1.example.com".to_owned()),
            }),
        };
        let text = plan.describe("~/.ssh/tpa_config").join("\n");
        assert!(
            text.contains("hosts routed through TPA: web-* db-*"),
            "{text}"
        );
        assert!(text.contains("+ hosts added:   db-*"), "{text}");
        assert!(text.contains("- hosts removed: old-*"), "{text}");
        assert!(
            text.contains("bastion: b1.example.com -> b2.example.com"),
            "{text}"
        );
        assert!(text.contains("domains the CA allows:    none"), "{text}");
    }
}
