//! Installs the snippet: writes `~/.ssh/tpa_config` when it changed and puts
//! one `Include` line at the top of `~/.ssh/config`. Idempotent, atomic,
//! with a backup of the user's file before the first change; keeps its
//! permissions and follows a symlink.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::config_path;
use crate::local::files::{private_dir, replace};

/// The line that pulls the snippet in.
fn include_line(snippet: &Path) -> anyhow::Result<String> {
    Ok(format!("Include {}", config_path(snippet)?))
}

/// Whether `config` already includes the snippet (a top-level line, keyword in
/// any case, the path quoted or not).
fn has_include(config: &str, snippet: &Path) -> bool {
    let plain = snippet.to_string_lossy().replace('%', "%%");
    config.lines().any(|line| {
        let mut words = line.trim().splitn(2, [' ', '\t', '=']);
        let keyword = words.next().unwrap_or_default();
        let rest = words.next().unwrap_or_default().trim();
        keyword.eq_ignore_ascii_case("include") && rest.trim_matches('"') == plain
    })
}

/// What `install` changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// The snippet file was written (it was missing or different).
    pub snippet_written: bool,
    /// The `Include` line was added to the user's config.
    pub include_added: bool,
    /// Where the user's config was copied before it was changed.
    pub backup: Option<PathBuf>,
}

/// Writes `text` to `snippet` when it differs and adds the `Include` line at
/// the top of `user_config` when it is missing. Nothing is written when nothing
/// changes; the user's file is backed up before its first change, replaced
/// atomically, and keeps its permissions.
pub fn install(snippet: &Path, user_config: &Path, text: &str) -> anyhow::Result<Changes> {
    let mut changes = Changes::default();
    let ssh_dir = user_config
        .parent()
        .context("the ssh config path has no directory")?;
    private_dir(ssh_dir)?;
    let current = match std::fs::read_to_string(snippet) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", snippet.display())),
    };
    if current.as_deref() != Some(text) {
        replace(snippet, text.as_bytes(), 0o600)?;
        changes.snippet_written = true;
    }

    // A symlinked ~/.ssh/config (dotfile managers) is edited where it points.
    let target = match std::fs::canonicalize(user_config) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => user_config.to_owned(),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot resolve {}", user_config.display()));
        }
    };
    let (existing, mode) = match std::fs::read(&target) {
        Ok(bytes) => {
            let mode = std::fs::metadata(&target)
                .with_context(|| format!("cannot read {}", target.display()))?
                .permissions()
                .mode()
                & 0o7777;
            let text = String::from_utf8(bytes).with_context(|| {
                format!(
                    "{} is not UTF-8 text; add the line yourself",
                    target.display()
                )
            })?;
            (Some(text), mode)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, 0o600),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", target.display())),
    };
    let existing_text = existing.as_deref().unwrap_or_default();
    if has_include(existing_text, snippet) {
        return Ok(changes);
    }
    if existing.is_some() {
        changes.backup = Some(backup(&target)?);
    }
    // At the very top: an Include inside a Host block would apply to that block only.
    let new = format!(
        "# Added by `tpa-ssh config`.\n{}\n\n{existing_text}",
        include_line(snippet)?
    );
    replace(&target, new.as_bytes(), mode)?;
    changes.include_added = true;
    Ok(changes)
}

/// Copies `path` to a new `<path>.tpa-backup-<unix time>[-n]` (never overwriting one).
fn backup(path: &Path) -> anyhow::Result<PathBuf> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let stamp = chrono::Utc::now().timestamp();
    for n in 0..100 {
        let suffix = if n == 0 {
            String::new()
        } else {
            format!("-{n}")
        };
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".tpa-backup-{stamp}{suffix}"));
        let candidate = PathBuf::from(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&candidate)
        {
            Ok(mut file) => {
                file.write_all(&bytes)
                    .and_then(|()| file.sync_all())
                    .with_context(|| format!("cannot write {}", candidate.display()))?;
                return Ok(candidate);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create {}", candidate.display()));
            }
        }
    }
    bail!("cannot find a free backup name next to {}", path.display())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn include_is_recognised_in_its_usual_spellings() {
        let p = Path::new("/h/.ssh/tpa_config");
        assert!(has_include("Include /h/.ssh/tpa_config\n", p));
        assert!(has_include("  include \"/h/.ssh/tpa_config\"\n", p));
        assert!(has_include("Host x\nInclude=/h/.ssh/tpa_config\n", p));
        assert!(!has_include("# Include /h/.ssh/tpa_config\n", p));
        assert!(!has_include("Include /h/.ssh/other\n", p));
    }

    #[test]
    fn install_is_idempotent_and_keeps_the_users_file() {
        let dir = std::env::temp_dir().join(format!("tpa-ssh-config-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ssh = dir.join(".ssh");
        let snippet = ssh.join("tpa_config");
        let config = ssh.join("config");
        std::fs::create_dir_all(&ssh).unwrap();
        std::fs::write(&config, "Host mine\n  User me\n").unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();

        let first = install(&snippet, &config, "Host web-*\n").unwrap();
        assert!(first.snippet_written && first.include_added);
        let backup = first.backup.unwrap();
        assert_eq!(
            std::fs::read_to_string(&backup).unwrap(),
            "Host mine\n  User me\n"
        );
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(
            text.starts_with("# Added by `tpa-ssh config`.\nInclude \""),
            "{text}"
        );
        assert!(text.ends_with("Host mine\n  User me\n"), "{text}");
        assert_eq!(
            std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
            0o640
        );

        let second = install(&snippet, &config, "Host web-*\n").unwrap();
        assert_eq!(
            second,
            Changes::default(),
            "nothing changes the second time"
        );
        assert_eq!(std::fs::read_to_string(&config).unwrap(), text);
        let backups = std::fs::read_dir(&ssh)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains("tpa-backup")
            })
            .count();
        assert_eq!(backups, 1, "no new backup");

        let third = install(&snippet, &config, "Host db-*\n").unwrap();
        assert!(third.snippet_written && !third.include_added && third.backup.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn install_creates_a_private_ssh_directory_and_config() {
        let dir = std::env::temp_dir().join(format!("tpa-ssh-config-new-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ssh = dir.join(".ssh");
        let changes =
            install(&ssh.join("tpa_config"), &ssh.join("config"), "Host web-*\n").unwrap();
        assert!(
            changes.include_added && changes.backup.is_none(),
            "nothing to back up"
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ssh), 0o700);
        assert_eq!(mode(&ssh.join("config")), 0o600);
        assert_eq!(mode(&ssh.join("tpa_config")), 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    // issue 18: an existing ~/.ssh at 0755 was written into as it was.
    #[test]
    fn install_tightens_an_existing_0755_ssh_directory() {
        let dir = std::env::temp_dir().join(format!("tpa-ssh-config-open-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ssh = dir.join(".ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();

        install(&ssh.join("tpa_config"), &ssh.join("config"), "Host web-*\n").unwrap();

        let mode = std::fs::metadata(&ssh).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlinked_config_is_edited_where_it_points() {
        let dir = std::env::temp_dir().join(format!("tpa-ssh-config-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ssh = dir.join(".ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        let real = dir.join("dotfiles-ssh-config");
        std::fs::write(&real, "Host mine\n").unwrap();
        std::os::unix::fs::symlink(&real, ssh.join("config")).unwrap();
        install(&ssh.join("tpa_config"), &ssh.join("config"), "Host web-*\n").unwrap();
        assert!(
            std::fs::symlink_metadata(ssh.join("config"))
                .unwrap()
                .file_type()
                .is_symlink(),
            "the link stays a link"
        );
        assert!(std::fs::read_to_string(&real).unwrap().contains("Include"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
