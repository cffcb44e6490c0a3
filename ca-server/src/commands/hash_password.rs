//! `tpa-ca hash-password`: one line of standard input → an argon2id PHC string for `password_hash`.

use std::io::BufRead as _;
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use crate::auth::identity::{MAX_PASSWORD_BYTES, hash_password};

pub(super) fn run() -> anyhow::Result<ExitCode> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line);
    if password.is_empty() {
        bail!(
            "no password on standard input; type it and press Enter, or pipe it: printf '%s\\n' \"$PASSWORD\" | tpa-ca hash-password"
        );
    }
    if password.len() > MAX_PASSWORD_BYTES {
        bail!("the password is longer than {MAX_PASSWORD_BYTES} bytes");
    }
    let hash = hash_password(password).context("cannot hash the password")?;
    println!("{hash}");
    Ok(ExitCode::SUCCESS)
}
