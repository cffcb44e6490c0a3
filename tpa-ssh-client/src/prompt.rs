//! Questions on the terminal: a line (`ask`), yes or no (`confirm`), and a
//! password without echo (`hidden`).
//!
//! The password prompt is rpassword's: it turns off echo, line mode and
//! signals on the terminal itself (no `stty`), restores them on every way
//! out, and answers Ctrl-C by restoring the terminal and raising SIGINT.
//! Review (tpa-ssh hardening): Ctrl-C must end the login with "login
//! cancelled" and the terminal as it was, so a SIGINT listener is in place
//! before the prompt, and the raised signal comes back as an error.

use std::io::{BufRead as _, Write as _};

use anyhow::{Context as _, bail};
use tokio::signal::unix::{SignalKind, signal};

/// Asks one question on the terminal; the answer, trimmed.
pub fn ask(question: &str) -> anyhow::Result<String> {
    eprint!("{question}: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read your answer")?;
    Ok(line.trim().to_owned())
}

/// Asks `question` on the terminal; whether the answer is yes.
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read your answer")?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// Shows `prompt` on the terminal and reads one line without echo; an empty
/// string when the person types Ctrl-D on an empty line. Runs inside the
/// async runtime (for the SIGINT listener).
pub fn hidden(prompt: &str) -> anyhow::Result<String> {
    let mut interrupt =
        signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C at the prompt")?;
    let typed = rpassword::prompt_password(prompt);
    // A listener cannot be removed again: a later Ctrl-C (while the login is
    // sent) ends the process as the default action would have.
    tokio::spawn(async move {
        if interrupt.recv().await.is_some() {
            std::process::exit(130);
        }
    });
    password(typed)
}

/// What rpassword's answer means for the login.
fn password(typed: std::io::Result<String>) -> anyhow::Result<String> {
    match typed {
        Ok(line) => Ok(line),
        // Ctrl-C: rpassword restored the terminal and raised SIGINT, which
        // the listener took.
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => bail!("login cancelled"),
        // Ctrl-D on an empty line.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(String::new()),
        Err(e) => {
            Err(e).context("cannot read the password from the terminal (use --password-stdin)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys at the prompt, as rpassword reads them (from bytes here; on
    /// a terminal it reads the same bytes with echo off). Ctrl-C is left to
    /// the e2e test `ctrl_c_at_the_password_prompt_gives_the_terminal_back`:
    /// it raises SIGINT.
    fn check(typed: &[u8], expected: &str) {
        let config = rpassword::ConfigBuilder::new()
            .input_data(typed.to_vec())
            .output_discard()
            .build();
        let line = password(rpassword::read_password_with_config(config)).unwrap();
        assert_eq!(line, expected, "{typed:?}");
    }

    #[test]
    fn keys_at_the_prompt() {
        check(b"secret\n", "secret");
        check(b"secret\r", "secret");
        check(b"with space\n", "with space");
        check(b"secrex\x7ft\n", "secret");
        check(b"x\x08\x08\x08ok\n", "ok");
        check("pässwörd\x7f\x7fd\n".as_bytes(), "pässwöd");
        check(b"wrong\x15right\n", "right");
        check(b"abc", "abc");
        check(b"\x04", "");
        // An arrow key's escape sequence is dropped whole.
        check(b"a\x1b[Db\n", "ab");
        check(b"\x01\x02ok\x00\n", "ok");
    }

    #[test]
    fn an_interrupted_prompt_is_a_cancelled_login() {
        let interrupted = std::io::Error::new(std::io::ErrorKind::Interrupted, "interrupted");
        let err = password(Err(interrupted)).unwrap_err();
        assert_eq!(format!("{err:#}"), "login cancelled");
    }
}
