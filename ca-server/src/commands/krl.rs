//! `tpa-ca krl --out FILE`: writes the KRL that `GET /krl` serves, atomically
//! (a temporary file in the same directory, fsync, mode 0644, rename, then a
//! sync of the directory), so sshd never reads half a file.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::Utc;

use crate::config::Config;
use crate::signer::Signer;
use crate::workflow::krl;

pub(super) fn run(config: &Path, out: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    let signer = Signer::load(&config.ca).context("cannot load the CA key")?;
    let conn = super::database::open(&config)?;
    let krl = krl::build(&conn, &signer.ca_key_data(), Utc::now().timestamp())
        .map_err(|e| anyhow::anyhow!("cannot build the KRL: {e}"))?;
    write_atomically(out, &krl.bytes)?;
    println!(
        "wrote KRL version {} ({} bytes) to {}",
        krl.version,
        krl.bytes.len(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Replaces `path` with `bytes` through a temporary file in the same directory.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        // The mode is set explicitly too: the umask may have narrowed it.
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .with_context(|| format!("cannot set the mode of {}", tmp.display()))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
        if let Ok(d) = std::fs::File::open(dir) {
            // Makes the rename durable; a failure here does not undo it.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
