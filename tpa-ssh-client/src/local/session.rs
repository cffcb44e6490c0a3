//! The saved login, `~/.config/tpa/session.json`: the CA, the token, whose
//! it is and when it expires; private to the user.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use tpa_core::api::StoredSession;

use super::{dirs, files};

fn session_path() -> anyhow::Result<PathBuf> {
    Ok(dirs::config_dir()?.join("session.json"))
}

/// Saves the login.
pub fn save(session: &StoredSession) -> anyhow::Result<()> {
    let text = serde_json::to_vec_pretty(session).context("cannot encode the session")?;
    files::write_private(&session_path()?, &text)
}

/// Whether a saved login file exists (readable or not).
pub fn exists() -> bool {
    session_path().is_ok_and(|p| p.symlink_metadata().is_ok())
}

/// The saved login, or a message saying to log in.
pub fn load() -> anyhow::Result<StoredSession> {
    let path = session_path()?;
    if !path.exists() {
        bail!("not logged in: run `tpa-ssh login --ca URL --username NAME`");
    }
    files::check_private(&path)?;
    let text = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is corrupt; run `tpa-ssh login` again", path.display()))
}

/// Forgets the login.
pub fn remove() -> anyhow::Result<()> {
    match std::fs::remove_file(session_path()?) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).context("cannot remove the saved login"),
    }
}

/// The saved login, when `--ca` (if given) names its CA.
pub fn load_for(ca: Option<&str>) -> anyhow::Result<StoredSession> {
    let session = load()?;
    if let Some(ca) = ca
        && ca.trim_end_matches('/') != session.ca_url
    {
        bail!(
            "you are logged in to {}, not {ca}: run `tpa-ssh login --ca {ca} …`",
            session.ca_url
        );
    }
    Ok(session)
}
