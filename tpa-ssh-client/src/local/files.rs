//! Private files: directories created 0700 (or tightened), and files written
//! 0600 through a temporary file and a rename, refused when group- or
//! world-readable. The login, the key, its certificate and the ssh_config
//! snippet are all written through here.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// Creates `dir` private (0700), or makes an existing one private before a
/// secret (token, key, certificate) goes in: a directory that group or
/// others may read or enter (`~/.ssh` or `~/.config/tpa` at 0755, say) is
/// tightened to its owner's bits alone, with a note on standard error; when
/// it cannot be (not ours), tpa-ssh refuses and says what to run.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let tight = mode & 0o700;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(tight)).with_context(|| {
        format!(
            "{} has permissions {mode:04o}: others could reach the secrets tpa-ssh keeps there, \
             and it cannot be made private; run `chmod 700 {}` (or fix its owner) and try again",
            dir.display(),
            dir.display()
        )
    })?;
    eprintln!(
        "tpa-ssh: {} had permissions {mode:04o}; made it private ({tight:04o}) because it holds your TPA login, key or certificate",
        dir.display()
    );
    Ok(())
}

/// A temporary name next to `path`, unique per file, per process and per call:
/// `.NAME.PID.RANDOM.tmp`. (Deriving it with `with_extension("tmp")` gave
/// `id_ed25519` and `id_ed25519.pub` the same temporary file, and two runs at
/// once removed each other's half-written files.)
fn temp_path(path: &Path) -> anyhow::Result<PathBuf> {
    let name = path
        .file_name()
        .context("path has no file name")?
        .to_string_lossy();
    let nonce: u64 = rand::random();
    Ok(path.with_file_name(format!(".{name}.{}.{nonce:016x}.tmp", std::process::id())))
}

/// Writes `bytes` to `path` with mode 0600 through a temporary file and a rename.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("path has no directory")?;
    private_dir(dir)?;
    replace(path, bytes, 0o600)
}

/// Replaces `path` atomically with `bytes` and `mode`: a temporary file
/// (created private next to `path`, named per file, per process and at
/// random), fsync, rename; the temporary file is removed when a step fails.
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = temp_path(path)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(mode)))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))
        .and_then(|()| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot replace {}", path.display()))
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Refuses a private file that group or others may read.
pub fn check_private(path: &Path) -> anyhow::Result<()> {
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} has permissions {:04o}; it must be private: run `chmod 600 {}`",
            path.display(),
            mode & 0o7777,
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_unique_per_file_and_per_process() {
        // Review: the key and its .pub shared one temporary file.
        let dir = Path::new("/d");
        let key = temp_path(&dir.join("id_ed25519")).unwrap();
        let public = temp_path(&dir.join("id_ed25519.pub")).unwrap();
        assert_ne!(key, public);
        assert_ne!(key, temp_path(&dir.join("id_ed25519")).unwrap());
        for tmp in [&key, &public] {
            assert_eq!(tmp.parent(), Some(dir), "{tmp:?}");
            let name = tmp.file_name().unwrap().to_str().unwrap();
            assert!(
                name.contains(&format!(".{}.", std::process::id())),
                "{name}"
            );
        }
        assert!(
            key.to_str().unwrap().starts_with("/d/.id_ed25519."),
            "{key:?}"
        );
        assert!(
            public.to_str().unwrap().starts_with("/d/.id_ed25519.pub."),
            "{public:?}"
        );
    }

    // issue 18: an existing 0755 directory was written into as it was.
    #[test]
    fn an_existing_0755_directory_is_made_private_before_a_secret_goes_in() {
        let dir = std::env::temp_dir().join(format!("tpa-dir-mode-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let open = dir.join("tpa");
        std::fs::create_dir_all(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;

        write_private(&open.join("session.json"), b"{}").unwrap();

        assert_eq!(mode(&open), 0o700);
        assert_eq!(mode(&open.join("session.json")), 0o600);
        // A fresh directory is private from the start; a private one is left alone.
        let fresh = dir.join("new/tpa");
        write_private(&fresh.join("id_ed25519"), b"k").unwrap();
        assert_eq!(mode(&fresh), 0o700);
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o500)).unwrap();
        private_dir(&open).unwrap();
        assert_eq!(mode(&open), 0o500);
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn writes_are_private_and_leave_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("tpa-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let key = dir.join("id_ed25519");
        let public = dir.join("id_ed25519.pub");
        write_private(&key, b"one").unwrap();
        write_private(&public, b"two").unwrap();
        write_private(&key, b"three").unwrap();
        assert_eq!(std::fs::read(&key).unwrap(), b"three");
        assert_eq!(std::fs::read(&public).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
