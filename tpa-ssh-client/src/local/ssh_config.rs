//! `tpa-ssh config`: the ssh_config snippet (`~/.ssh/tpa_config`) and the one
//! `Include` line at the top of `~/.ssh/config` that pulls it in. Idempotent,
//! atomic, with a backup of the user's file before the first change.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use tpa_core::{BastionAddress, HostPattern, Username};

use super::files::{private_dir, replace};
use super::keys::KeyFiles;

/// The alias the snippet gives the bastion.
pub const BASTION_ALIAS: &str = "tpa-bastion";

/// A path as one ssh_config argument: `%` doubled (ssh expands `%` tokens in
/// file names), double-quoted; refused when it could break out of the line.
pub fn config_path(path: &Path) -> anyhow::Result<String> {
    let text = path
        .to_str()
        .with_context(|| format!("{} is not valid UTF-8", path.display()))?;
    if text
        .chars()
        .any(|c| c.is_control() || c == '"' || c == '\\')
    {
        bail!(
            "the path {text:?} contains a quote, backslash or control character and cannot go into an ssh_config file"
        );
    }
    Ok(format!("\"{}\"", text.replace('%', "%%")))
}

/// What the snippet contains.
#[derive(Debug)]
pub struct Snippet<'a> {
    /// Hosts that go through TPA.
    pub patterns: &'a [HostPattern],
    /// The bastion, when the CA announces one.
    pub bastion: Option<&'a BastionAddress>,
    /// The login at the bastion (`User` of the bastion alias), when given.
    pub bastion_login: Option<&'a Username>,
    /// The key and certificate.
    pub keys: &'a KeyFiles,
}

/// The snippet's text.
pub fn render(s: &Snippet<'_>) -> anyhow::Result<String> {
    if s.patterns.is_empty() {
        bail!("no host patterns to write");
    }
    let identity = format!(
        "  CertificateFile {}\n  IdentityFile {}\n  IdentitiesOnly yes\n",
        config_path(&s.keys.cert)?,
        config_path(&s.keys.private)?
    );
    let mut out = String::from(
        "# Written by `tpa-ssh config`; run it again to update this file (edits here are lost).\n",
    );
    if let Some(b) = s.bastion {
        out.push_str(&format!(
            "\nHost {BASTION_ALIAS}\n  HostName {}\n",
            b.host()
        ));
        if let Some(port) = b.port() {
            out.push_str(&format!("  Port {port}\n"));
        }
        // The bastion takes its jump login with any valid TPA certificate
        // (issue 12), so `ssh -J` works whatever the local user name is.
        let login = s
            .bastion_login
            .map_or(tpa_core::template::JUMP_LOGIN, Username::as_str);
        out.push_str(&format!("  User {login}\n"));
        out.push_str("  ProxyJump none\n");
        out.push_str(&identity);
    }
    let patterns: Vec<&str> = s.patterns.iter().map(HostPattern::as_str).collect();
    out.push_str(&format!("\nHost {}\n", patterns.join(" ")));
    if s.bastion.is_some() {
        out.push_str(&format!("  ProxyJump {BASTION_ALIAS}\n"));
    }
    out.push_str(&identity);
    Ok(out)
}

/// The host patterns and bastion a snippet holds, as [`render`] wrote them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The patterns of its `Host` line (the bastion alias's aside).
    pub patterns: Vec<String>,
    /// The bastion as `host[:port]`, when it has one.
    pub bastion: Option<String>,
}

/// Reads back what [`render`] wrote (for saying what a new run changes).
pub fn written(text: &str) -> Written {
    let mut patterns = Vec::new();
    let (mut host, mut port, mut in_bastion) = (None, None, false);
    for line in text.lines() {
        let line = line.trim();
        if let Some(names) = line.strip_prefix("Host ") {
            in_bastion = names == BASTION_ALIAS;
            if !in_bastion {
                patterns.extend(names.split_whitespace().map(str::to_owned));
            }
        } else if in_bastion {
            if let Some(h) = line.strip_prefix("HostName ") {
                host = Some(h.to_owned());
            } else if let Some(p) = line.strip_prefix("Port ") {
                port = Some(p.to_owned());
            }
        }
    }
    let bastion = host.map(|h| match (h.contains(':'), port) {
        (true, Some(p)) => format!("[{h}]:{p}"),
        (true, None) => format!("[{h}]"),
        (false, Some(p)) => format!("{h}:{p}"),
        (false, None) => h,
    });
    Written { patterns, bastion }
}

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
    use super::*;

    fn keys(dir: &Path) -> KeyFiles {
        KeyFiles {
            private: dir.join("id_ed25519"),
            public: dir.join("id_ed25519.pub"),
            cert: dir.join("id_ed25519-cert.pub"),
        }
    }

    #[test]
    fn snippet_with_and_without_a_bastion() {
        let patterns = [
            HostPattern::parse("web-*").unwrap(),
            HostPattern::parse("*.prod.example.com").unwrap(),
        ];
        let k = keys(Path::new("/home/a b/.local/share/tpa"));
        let bastion = BastionAddress::parse("bastion.example.com:2222").unwrap();
        let login = Username::parse("deploy").unwrap();
        let text = render(&Snippet {
            patterns: &patterns,
            bastion: Some(&bastion),
            bastion_login: Some(&login),
            keys: &k,
        })
        .unwrap();
        assert!(text.contains("\nHost tpa-bastion\n  HostName bastion.example.com\n  Port 2222\n  User deploy\n  ProxyJump none\n"), "{text}");
        assert!(text.contains("\nHost web-* *.prod.example.com\n  ProxyJump tpa-bastion\n  CertificateFile \"/home/a b/.local/share/tpa/id_ed25519-cert.pub\"\n  IdentityFile \"/home/a b/.local/share/tpa/id_ed25519\"\n  IdentitiesOnly yes\n"), "{text}");
        // Issue 12: without --bastion-login, the bastion's jump login.
        let text = render(&Snippet {
            patterns: &patterns,
            bastion: Some(&bastion),
            bastion_login: None,
            keys: &k,
        })
        .unwrap();
        assert!(
            text.contains("  Port 2222\n  User tpa\n  ProxyJump none\n"),
            "{text}"
        );
        let text = render(&Snippet {
            patterns: &patterns,
            bastion: None,
            bastion_login: None,
            keys: &k,
        })
        .unwrap();
        assert!(
            !text.contains("ProxyJump") && !text.contains("tpa-bastion"),
            "{text}"
        );
        assert_eq!(
            written(&text),
            Written {
                patterns: vec!["web-*".to_owned(), "*.prod.example.com".to_owned()],
                bastion: None
            }
        );
        let with = render(&Snippet {
            patterns: &patterns,
            bastion: Some(&bastion),
            bastion_login: Some(&login),
            keys: &k,
        })
        .unwrap();
        assert_eq!(
            written(&with).bastion.as_deref(),
            Some("bastion.example.com:2222")
        );
    }

    #[test]
    fn paths_are_quoted_or_refused() {
        assert_eq!(
            config_path(Path::new("/h/100%/k")).unwrap(),
            "\"/h/100%%/k\""
        );
        for bad in ["/h/a\"b", "/h/a\nHost *", "/h/a\\b"] {
            assert!(config_path(Path::new(bad)).is_err(), "{bad:?}");
        }
    }

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
