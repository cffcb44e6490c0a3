//! Keys for tests: real `ssh-keygen` key files, in-process Ed25519 keys, and
//! password hashes for `[[accounts]]` entries.

use std::path::Path;
use std::process::{Command, Stdio};

use ssh_key::{Algorithm, PrivateKey};

/// Runs `ssh-keygen -q -N '' -C test@tpa -f DIR/NAME ARGS…` and returns the public key line.
pub fn ssh_keygen(dir: &Path, name: &str, args: &[&str]) -> String {
    let path = dir.join(name);
    let output = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-C", "test@tpa", "-f"])
        .arg(&path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("ssh-keygen must be installed (Debian package openssh-client)");
    assert!(
        output.status.success(),
        "ssh-keygen {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(dir.join(format!("{name}.pub"))).unwrap()
}

/// A fresh Ed25519 public key line, generated in-process.
pub fn ed25519_public_key() -> String {
    PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .unwrap()
        .public_key()
        .to_openssh()
        .unwrap()
}

/// The argon2id PHC string for `password`, as `tpa-ca hash-password` prints
/// it; hashed once per password and test binary (argon2 is slow on purpose).
pub fn hash_password(password: &str) -> String {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(hash) = cache.lock().unwrap().get(password) {
        return hash.clone();
    }
    let hash = ca_server::auth::identity::hash_password(password).unwrap();
    cache
        .lock()
        .unwrap()
        .entry(password.to_owned())
        .or_insert(hash)
        .clone()
}
