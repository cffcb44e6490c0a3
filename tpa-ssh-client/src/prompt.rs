//! Questions on the terminal: a line (`ask`), yes or no (`confirm`), and a
//! password without echo (`hidden`): nothing is echoed, Ctrl-C cancels, and
//! the terminal's settings come back on every path.
//!
//! Review: the prompt ran `stty -echo`, and Ctrl-C killed the process before
//! `stty echo` ran, leaving the shell without echo. Here the terminal is put
//! in non-canonical mode with signals off (`stty -echo -icanon -isig`), so
//! Ctrl-C arrives as a byte the prompt handles instead of a SIGINT that kills
//! the process; a guard restores the saved settings (`stty -g`) when the
//! prompt returns, fails or unwinds.

use std::io::{BufRead as _, Read as _, Write as _};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

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

/// What one key does to the line being typed.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Keep reading.
    More,
    /// Enter (or Ctrl-D): the line is complete.
    Done,
    /// Ctrl-C: stop without a password.
    Cancel,
}

/// Applies one byte typed at the prompt to `line`.
fn feed(line: &mut Vec<u8>, byte: u8) -> Step {
    match byte {
        b'\r' | b'\n' | 0x04 => Step::Done,
        0x03 => Step::Cancel,
        // Backspace: one character, all of its UTF-8 bytes.
        0x7f | 0x08 => {
            while let Some(b) = line.pop() {
                if b & 0xc0 != 0x80 {
                    break;
                }
            }
            Step::More
        }
        // Ctrl-U: start again.
        0x15 => {
            line.clear();
            Step::More
        }
        // Other control characters (arrow keys' escapes and the like).
        b if b < 0x20 => Step::More,
        b => {
            line.push(b);
            Step::More
        }
    }
}

/// `stty ARGS` on the terminal that is standard input.
fn stty(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("stty")
        .args(args)
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run stty to turn off echo (use --password-stdin)")?;
    if !out.status.success() {
        bail!("stty {} failed (use --password-stdin)", args.join(" "));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The terminal in no-echo, byte-at-a-time mode; its saved settings come
/// back when this is dropped.
#[derive(Debug)]
struct QuietTerminal {
    saved: String,
}

impl QuietTerminal {
    fn enter() -> anyhow::Result<Self> {
        let saved = stty(&["-g"])?;
        if saved.is_empty() {
            bail!("stty -g printed nothing (use --password-stdin)");
        }
        // From here on, dropping the guard restores the terminal, also when
        // the next step fails halfway.
        let guard = Self { saved };
        stty(&["-echo", "-icanon", "-isig", "min", "1", "time", "0"])?;
        Ok(guard)
    }
}

impl Drop for QuietTerminal {
    fn drop(&mut self) {
        let _ = Command::new("stty")
            .arg(&self.saved)
            .stdin(Stdio::inherit())
            .status();
    }
}

/// Shows `prompt` and reads one line from the terminal without echo.
pub fn hidden(prompt: &str) -> anyhow::Result<String> {
    let terminal = QuietTerminal::enter()?;
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = Vec::new();
    let mut stdin = std::io::stdin().lock();
    let mut byte = [0u8; 1];
    let step = loop {
        match stdin.read(&mut byte) {
            Ok(0) => break Step::Done,
            Ok(_) => match feed(&mut line, byte[0]) {
                Step::More => {}
                end => break end,
            },
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                drop(terminal);
                eprintln!();
                return Err(e).context("cannot read the password");
            }
        }
    };
    drop(terminal);
    eprintln!();
    if step == Step::Cancel {
        bail!("login cancelled");
    }
    String::from_utf8(line).context("the password is not valid UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(typed: &[u8], expected_line: &str, expected: Step) {
        let mut line = Vec::new();
        let mut step = Step::More;
        for &b in typed {
            step = feed(&mut line, b);
            if step != Step::More {
                break;
            }
        }
        assert_eq!(step, expected, "{typed:?}");
        assert_eq!(String::from_utf8(line).unwrap(), expected_line, "{typed:?}");
    }

    #[test]
    fn keys_at_the_prompt() {
        check(b"secret\n", "secret", Step::Done);
        check(b"secret\r", "secret", Step::Done);
        check(b"with space\n", "with space", Step::Done);
        check(b"secrex\x7ft\n", "secret", Step::Done);
        check(b"x\x08\x08\x08ok\n", "ok", Step::Done);
        check("pässwörd\x7f\x7fd\n".as_bytes(), "pässwöd", Step::Done);
        check(b"wrong\x15right\n", "right", Step::Done);
        check(b"half\x03rest\n", "half", Step::Cancel);
        check(b"\x03", "", Step::Cancel);
        check(b"abc\x04", "abc", Step::Done);
        check(b"a\x1b[Db\n", "a[Db", Step::Done);
        check(b"\x01\x02ok\x00\n", "ok", Step::Done);
    }
}
