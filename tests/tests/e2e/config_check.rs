//! `tpa-ca config check` beyond the file (issue 12): `[[bastions]]`,
//! `[client]` (does the announced bastion answer?), bastion token files, and
//! the OpenID providers' discovery (reachable, issuer matches), one line per
//! finding; any error makes the exit status non-zero.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Output;

use crate::harness::{CaDir, Sshd, free_port, http_get, tpa_ca};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn append(path: &Path, extra: &str) {
    let mut text = std::fs::read_to_string(path).unwrap();
    text.push_str(extra);
    std::fs::write(path, text).unwrap();
}

/// A bastion.toml in `dir` whose token file holds `token`; returns its path.
fn bastion_config(dir: &Path, token: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let token_file = dir.join("ca_token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.join("bastion.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:2200\"\nhost_key_file = \"host_ed25519\"\nca_url = \"http://127.0.0.1:8700\"\nca_token_file = \"ca_token\"\n",
    )
    .unwrap();
    config
}

/// SHA-256 of `token` in hex, as `[[bastions]] token_hash` wants it.
fn sha256_hex(token: &str) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(token.as_bytes())?;
            c.wait_with_output()
        })
        .expect("run sha256sum");
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

fn check(ca: &CaDir, bastion_configs: &[&Path]) -> Output {
    let mut args = vec!["config", "check", "--config", ca.config.to_str().unwrap()];
    for b in bastion_configs {
        args.push("--bastion-config");
        args.push(b.to_str().unwrap());
    }
    tpa_ca(&args)
}

// issue 12: adding a bastion took three sections and `config check` said
// nothing about [[bastions]] or [client].
#[test]
fn config_check_confirms_a_matching_bastion_token_and_an_answering_bastion() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = CaDir::init(tmp.path(), "ca");
    // A real SSH server answers at the announced address.
    let ca_pub = std::fs::read(ca.dir.join("ca_key.pub")).unwrap();
    let sshd = Sshd::start(&tmp.path().join("sshd"), &ca_pub);
    let token = "edge-token-for-the-test";
    append(
        &ca.config,
        &format!(
            "\n[client]\nbastion = \"127.0.0.1:{}\"\nhost_patterns = [\"web-*\"]\n\n[[bastions]]\nname = \"edge\"\ntoken_hash = \"{}\"\n",
            sshd.port,
            sha256_hex(token)
        ),
    );
    let bastion = bastion_config(&tmp.path().join("bastion"), token);
    let out = check(&ca, &[&bastion]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    for line in [
        "  ok: [[bastions]] edge: may read the revocation feed".to_owned(),
        format!(
            "  ok: client.bastion 127.0.0.1:{} answers (SSH-2.0-",
            sshd.port
        ),
        "  ok: client.host_patterns: web-*".to_owned(),
        format!("  ok: bastion config {}: its token", bastion.display()),
    ] {
        assert!(said.contains(&line), "{line:?} missing:\n{said}");
    }
    assert!(!said.contains("error:") && !said.contains(token), "{said}");
}

// issue 12: a token file that matches no entry, a bastion announced but not
// answering, and an announced bastion without [[bastions]] are each one line.
#[test]
fn config_check_names_a_foreign_token_and_a_silent_bastion_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = CaDir::init(tmp.path(), "ca");
    let silent = free_port();
    append(
        &ca.config,
        &format!("\n[client]\nbastion = \"127.0.0.1:{silent}\"\nhost_patterns = [\"web-*\"]\n"),
    );
    let bastion = bastion_config(&tmp.path().join("bastion"), "a-token-the-ca-does-not-know");
    let out = check(&ca, &[&bastion]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    let errors: Vec<&str> = said
        .lines()
        .filter(|l| l.starts_with("  error: "))
        .collect();
    assert_eq!(errors.len(), 2, "{said}");
    assert!(
        errors[0].contains(&format!(
            "client.bastion 127.0.0.1:{silent} does not answer"
        )),
        "{said}"
    );
    assert!(
        errors[1].contains("matches no [[bastions]] entry")
            && errors[1].contains(&sha256_hex("a-token-the-ca-does-not-know")),
        "{said}"
    );
    assert!(
        said.contains("  warning: client.bastion 127.0.0.1:")
            && said.contains("no [[bastions]] entry"),
        "{said}"
    );
    assert!(said.contains("2 problems found"), "{said}");
}

// issue 12: OIDC connectors' discovery: reachable, issuer exactly as
// configured; against the real npm oidc-provider.
#[test]
fn config_check_checks_each_oidc_providers_discovery_and_issuer() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = CaDir::init(tmp.path(), "ca");
    let addr = format!("127.0.0.1:{}", free_port());
    let (_idp, issuer) =
        crate::harness::start_provider(tmp.path(), &format!("http://{addr}/oidc/callback"));
    let (status, _) = http_get(
        issuer.trim_start_matches("http://").parse().unwrap(),
        "/.well-known/openid-configuration",
    );
    assert_eq!(status, 200);
    let secret = ca.dir.join("idp.secret");
    std::fs::write(&secret, "tpa-e2e-secret\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut config = std::fs::read_to_string(&ca.config).unwrap();
    config = config.replacen(
        "[server]\n",
        &format!("[server]\npublic_url = \"http://{addr}\"\n"),
        1,
    );
    let down = format!("http://127.0.0.1:{}", free_port());
    for (name, iss) in [
        ("right", issuer.clone()),
        ("slash", format!("{issuer}/")),
        ("down", down.clone()),
    ] {
        config.push_str(&format!(
            "\n[[oidc]]\nname = \"{name}\"\nissuer = \"{iss}\"\nclient_id = \"tpa\"\nclient_secret_file = \"idp.secret\"\ntrust_group_names = true\n"
        ));
    }
    std::fs::write(&ca.config, config).unwrap();
    let out = check(&ca, &[]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    let line = |prefix: &str| {
        said.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?}:\n{said}"))
            .to_owned()
    };
    assert!(
        line("  ok: oidc right: ").contains("its issuer matches"),
        "{said}"
    );
    assert!(
        line("  error: oidc slash: ").contains(&format!("set issuer to exactly {issuer:?}")),
        "{said}"
    );
    assert!(
        line("  error: oidc down: ").contains("is unreachable"),
        "{said}"
    );
    assert!(!said.contains("tpa-e2e-secret"), "{said}");
}
