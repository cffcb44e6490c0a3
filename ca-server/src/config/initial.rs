//! The configuration `tpa-ca init` writes, with every key commented.

use std::net::SocketAddr;
use std::path::Path;

/// The `[database]` body of a new SQLite install.
pub const SQLITE_DATABASE: &str = "path = \"tpa.db\"";

/// `database` is the body of `[database]` (`path = "tpa.db"` for SQLite).
pub fn initial_config_text(
    listen: SocketAddr,
    passphrase_file: Option<&Path>,
    database: &str,
) -> String {
    let passphrase = match passphrase_file {
        Some(p) => format!(
            "passphrase_file = {}\n",
            toml_string(&p.display().to_string())
        ),
        None => {
            "# passphrase_file = \"ca_key.passphrase\"   # when the key is encrypted\n".to_owned()
        }
    };
    format!(
        r#"# TPA certificate authority configuration. Every key is described in docs/configuration.md.
# Relative paths are relative to this file's directory.

[server]
# Address of the HTTP listener (API, web pages, /ca.pub, /healthz).
listen = "{listen}"
# The URL users reach the CA at. With https:// the session cookie is Secure
# and named __Host-tpa_session; put TLS in front of the CA (a reverse proxy).
# public_url = "https://ca.example.com"

[ca]
# The user-CA signing key: OpenSSH private key, mode 0600, owned by the CA's user.
key_file = "ca_key"
{passphrase}# Extra public keys published in /ca.pub next to the signing key, e.g. the
# previous CA key while hosts move to the new one.
extra_trusted_public_key_files = []

[database]
{database}

[admin_issue]
# Longest certificate that `tpa-ca issue` (the break-glass path) signs.
max_ttl = "1h"

[auth]
# Lifetime of a web login session and of an API token (POST /api/v1/login).
session_ttl = "8h"
api_token_ttl = "12h"
# Lifetime of an API token from a device login (tpa-ssh login --no-browser).
device_token_ttl = "1h"
# Members of these groups may revoke any certificate, request, user or CA key
# through the API and the web pages (the operator can always use `tpa-ca revoke`).
admin_groups = []

[audit]
# Ed25519 key that signs checkpoints of the audit hash chain (mode 0600);
# auditors verify with its public half, audit_key.pub.
key_file = "audit_key"
# How often the server signs the chain head.
checkpoint_interval = "10m"
# Every checkpoint is also appended here; keep a copy away from the database
# (or ship it to monitoring): it is what shows an older database was restored.
checkpoint_file = "audit_checkpoints.jsonl"

# Built-in local accounts. Create a password hash with `tpa-ca hash-password`.
# [[accounts]]
# username = "alice"
# display_name = "Alice Example"
# password_hash = "$argon2id$v=19$m=19456,t=2,p=1$…"   # or password_hash_file = "alice.hash"
# groups = ["engineers"]
"#
    )
}

/// A TOML basic string. JSON's string escapes are a subset of TOML's.
pub fn toml_string(value: &str) -> String {
    serde_json::Value::String(value.to_owned()).to_string()
}
