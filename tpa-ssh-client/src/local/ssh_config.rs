//! `tpa-ssh config`: the ssh_config snippet (`~/.ssh/tpa_config`), and
//! (`install.rs`) the one `Include` line at the top of `~/.ssh/config` that
//! pulls it in.

mod install;

pub use install::{Changes, install};

use std::path::Path;

use anyhow::{Context as _, bail};
use tpa_core::{BastionAddress, HostPattern, Username};

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
}
