//! `tpa-ca config check` for `[[ldap]]` (issue 16): each directory answers
//! the service account over TLS with the pinned CA and holds `user_base`.

use super::config_findings::{Finding, Level};
use crate::auth::identity::ldap::LdapConnector;
use crate::config::Config;

/// One finding per `[[ldap]]` connector.
pub(super) async fn ldap_directories(config: &Config) -> Vec<Finding> {
    let mut out = Vec::with_capacity(config.ldap.len());
    for c in &config.ldap {
        let (level, text) = match LdapConnector::new(c.clone()) {
            Err(e) => (Level::Error, format!("ldap {}: {e}", c.name)),
            Ok(connector) => match connector.check().await {
                Ok(()) => (
                    Level::Ok,
                    format!(
                        "ldap {}: {} answers the service account and holds user_base (try `tpa-ca ldap test --username NAME`)",
                        c.name, c.url
                    ),
                ),
                Err(e) => (Level::Error, format!("ldap {}: {e}", c.name)),
            },
        };
        out.push(Finding { level, text });
    }
    out
}
