//! The command line of `tpa-ssh ssh`: the key and certificate, the bastion
//! as a `ProxyCommand` that carries them, and the login as `-l`, built from
//! values already parsed by tpa-core's grammars; paths are quoted, and
//! refused when they hold a quote or control character.

use std::path::Path;

use anyhow::{Context as _, bail};
use tpa_core::{BastionAddress, HostName};

use crate::local::keys::KeyFiles;
use crate::local::ssh_config::config_path;

/// A path as one word for the shell of a ProxyCommand.
fn shell_word(path: &Path) -> anyhow::Result<String> {
    let text = path
        .to_str()
        .with_context(|| format!("{} is not valid UTF-8", path.display()))?;
    if text
        .chars()
        .any(|c| c.is_control() || c == '\'' || c == '%')
    {
        bail!("the path {text:?} contains a quote, % or control character; use another key_file");
    }
    Ok(format!("'{text}'"))
}

/// ssh's options that take an argument (from ssh(1)'s synopsis).
const SSH_OPTIONS_WITH_ARGUMENT: &str = "BbcDEeFIiJLlmOopQRSWw";

/// The value of ssh option `-<letter>` among the user's ssh arguments (options
/// only: the remote command after them is not looked at).
pub fn ssh_option(ssh_args: &[String], letter: char) -> Option<&str> {
    let mut found = None;
    let mut args = ssh_args.iter();
    while let Some(arg) = args.next() {
        let Some(rest) = arg.strip_prefix('-').filter(|r| !r.is_empty() && *r != "-") else {
            break; // the remote command starts here
        };
        for (i, c) in rest.char_indices() {
            if SSH_OPTIONS_WITH_ARGUMENT.contains(c) {
                let value = match &rest[i + c.len_utf8()..] {
                    "" => args.next().map(String::as_str),
                    inline => Some(inline),
                };
                if c == letter {
                    found = value;
                }
                break;
            }
        }
    }
    found
}

/// The login ssh would use when the user names none.
pub fn local_user() -> Option<String> {
    std::env::var("USER")
        .ok()
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|u| !u.is_empty())
}

/// ssh's arguments for `tpa-ssh ssh`: the key and certificate, the bastion as
/// a `ProxyCommand` (logging in there as `login` too), `-l login` unless the
/// user's own ssh arguments carry it, the host and the user's ssh arguments.
///
/// ssh splits an `-o` value into words as it splits an ssh_config line, so the
/// certificate's path goes in double quotes (a HOME with a space broke it);
/// `%` is doubled because ssh expands `%` tokens in file names.
pub fn ssh_command_args(
    keys: &KeyFiles,
    bastion: Option<&BastionAddress>,
    login: Option<&str>,
    login_in_ssh_args: bool,
    host: &HostName,
    ssh_args: &[String],
) -> anyhow::Result<Vec<String>> {
    let identity = keys
        .private
        .to_str()
        .with_context(|| format!("{} is not valid UTF-8", keys.private.display()))?
        .replace('%', "%%");
    let mut out = vec![
        "-i".to_owned(),
        identity,
        "-o".to_owned(),
        format!("CertificateFile={}", config_path(&keys.cert)?),
        "-o".to_owned(),
        "IdentitiesOnly=yes".to_owned(),
    ];
    if let Some(b) = bastion {
        // ProxyJump would not pass the key and certificate to the hop; this does.
        let mut proxy = String::from("ssh");
        if let Some(l) = login {
            proxy.push_str(&format!(" -l {l}"));
        }
        // shell_word refuses `'` and `%`, so the quoted ssh_config value
        // can sit inside single quotes for the shell.
        shell_word(&keys.cert)?;
        proxy.push_str(&format!(
            " -i {} -o 'CertificateFile={}' -o IdentitiesOnly=yes",
            shell_word(&keys.private)?,
            config_path(&keys.cert)?
        ));
        if let Some(f) = ssh_option(ssh_args, 'F') {
            proxy.push_str(&format!(" -F {}", shell_word(Path::new(f))?));
        }
        if let Some(port) = b.port() {
            proxy.push_str(&format!(" -p {port}"));
        }
        proxy.push_str(&format!(" -W '[%h]:%p' {}", b.host()));
        out.push("-o".to_owned());
        out.push(format!("ProxyCommand={proxy}"));
    }
    if let (Some(l), false) = (login, login_in_ssh_args) {
        out.push("-l".to_owned());
        out.push(l.to_owned());
    }
    out.push(host.as_str().to_owned());
    out.extend(ssh_args.iter().cloned());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_options_among_ssh_args_but_not_in_the_command() {
        let check = |v: &[&str], letter: char, expected: Option<&str>| {
            let args: Vec<String> = v.iter().map(|s| s.to_string()).collect();
            assert_eq!(ssh_option(&args, letter), expected, "{v:?} -{letter}");
        };
        check(&["-F", "/x", "true"], 'F', Some("/x"));
        check(&["-F/y"], 'F', Some("/y"));
        check(&["-v", "uptime"], 'F', None);
        check(&["-l", "deploy", "uptime"], 'l', Some("deploy"));
        check(&["-vl", "deploy"], 'l', Some("deploy"));
        check(&["-o", "User=x", "-ldeploy"], 'l', Some("deploy"));
        check(&["ls", "-la"], 'l', None);
        check(&["-p", "22", "ls", "-la"], 'l', None);
        check(&["-o", "-l"], 'l', None);
        check(&["-l"], 'l', None);
    }

    // issue 12: LOGIN@HOST reached ssh as the bare host, so ssh logged in as
    // the local user; the login now goes with -l, and to the bastion too.
    #[test]
    fn the_login_reaches_ssh_and_the_bastion() {
        let dir = Path::new("/home/u/.local/share/tpa");
        let keys = KeyFiles {
            private: dir.join("id_ed25519"),
            public: dir.join("id_ed25519.pub"),
            cert: dir.join("id_ed25519-cert.pub"),
        };
        let host = HostName::parse("web-1").unwrap();
        let bastion = BastionAddress::parse("127.0.0.1:2222").unwrap();
        let direct = ssh_command_args(&keys, None, Some("root"), false, &host, &[]).unwrap();
        assert!(
            direct.ends_with(&["-l".to_owned(), "root".to_owned(), "web-1".to_owned()]),
            "{direct:?}"
        );
        let jumped =
            ssh_command_args(&keys, Some(&bastion), Some("root"), false, &host, &[]).unwrap();
        assert!(
            jumped.ends_with(&["-l".to_owned(), "root".to_owned(), "web-1".to_owned()]),
            "{jumped:?}"
        );
        let proxy = jumped
            .iter()
            .find(|a| a.starts_with("ProxyCommand="))
            .unwrap();
        assert!(proxy.starts_with("ProxyCommand=ssh -l root "), "{proxy}");
        // The user's own `-l` after `--` is left to ssh, not doubled.
        let own = ["-l".to_owned(), "deploy".to_owned()];
        let theirs =
            ssh_command_args(&keys, Some(&bastion), Some("deploy"), true, &host, &own).unwrap();
        assert_eq!(
            theirs.iter().filter(|a| *a == "-l").count(),
            1,
            "{theirs:?}"
        );
        assert!(theirs.ends_with(&["web-1".to_owned(), "-l".to_owned(), "deploy".to_owned()]));
    }

    #[test]
    fn shell_words_are_single_quoted_or_refused() {
        assert_eq!(shell_word(Path::new("/h/a b/k")).unwrap(), "'/h/a b/k'");
        for bad in ["/h/it's", "/h/100%", "/h/a\nb"] {
            assert!(shell_word(Path::new(bad)).is_err(), "{bad:?}");
        }
    }
    #[test]
    fn paths_with_spaces_reach_ssh_as_one_value() {
        // Review: `-o CertificateFile=/home/a b/…` made ssh stop with "extra
        // arguments at end of line". The real ssh parses the arguments here.
        let dir = Path::new("/home/a b/.local/share/tpa");
        let keys = KeyFiles {
            private: dir.join("id_ed25519"),
            public: dir.join("id_ed25519.pub"),
            cert: dir.join("id_ed25519-cert.pub"),
        };
        let host = HostName::parse("web-1").unwrap();
        let bastion = BastionAddress::parse("bastion.example.com:2222").unwrap();
        let args =
            ssh_command_args(&keys, Some(&bastion), Some("deploy"), false, &host, &[]).unwrap();
        let cert_option = r#"CertificateFile="/home/a b/.local/share/tpa/id_ed25519-cert.pub""#;
        assert!(args.iter().any(|a| a == cert_option), "{args:?}");
        let proxy = args
            .iter()
            .find(|a| a.starts_with("ProxyCommand="))
            .unwrap();
        assert!(
            proxy.contains(&format!(
                " -i '/home/a b/.local/share/tpa/id_ed25519' -o '{cert_option}' "
            )),
            "{proxy}"
        );
        let out = std::process::Command::new("ssh")
            .arg("-G")
            .args(&args)
            .output()
            .expect("run ssh -G (install openssh-client)");
        let config = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{config}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            config
                .lines()
                .any(|l| l == "certificatefile /home/a b/.local/share/tpa/id_ed25519-cert.pub"),
            "{config}"
        );
        // The ProxyCommand's inner ssh gets the same words after the shell.
        let inner = proxy.trim_start_matches("ProxyCommand=ssh ");
        let inner = inner.split(" -W ").next().unwrap();
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("exec ssh -G {inner} web-1")])
            .output()
            .unwrap();
        let config = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{inner}: {config}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            config
                .lines()
                .any(|l| l == "certificatefile /home/a b/.local/share/tpa/id_ed25519-cert.pub"),
            "{config}"
        );
    }
}
