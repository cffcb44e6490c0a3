//! `tpa-ca ldap test --config F --username U [--bind]`: looks a user up in
//! each `[[ldap]]` directory as a login would, and prints what TPA sees:
//! the DN, the stable id, the directory groups and the mapped TPA groups.
//! Only with `--bind` is a password read (one line on standard input).

use std::io::BufRead as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use crate::auth::identity::ldap::{LdapConnector, LdapError, LdapLogin};
use crate::config::Config;

pub(super) fn run(
    config_path: &Path,
    username: &str,
    bind: bool,
    only: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let chosen: Vec<_> = config
        .ldap
        .iter()
        .filter(|c| only.is_none_or(|name| c.name == name))
        .cloned()
        .collect();
    if chosen.is_empty() {
        match only {
            Some(name) => bail!(
                "{} has no [[ldap]] connector named {name:?}",
                config_path.display()
            ),
            None => bail!(
                "{} has no [[ldap]] connector; see docs/configuration.md",
                config_path.display()
            ),
        }
    }
    let password = if bind { Some(read_password()?) } else { None };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut found_one = false;
    for connector_config in chosen {
        let name = connector_config.name.clone();
        let connector = LdapConnector::new(connector_config)
            .map_err(|e| anyhow::anyhow!("ldap connector {name:?}: {e}"))?;
        println!("connector {name} ({})", connector.config.url);
        let result = runtime.block_on(async {
            match &password {
                Some(password) => connector.login(username, password).await,
                None => connector.lookup(username).await,
            }
        });
        match result {
            Ok(login) => {
                found_one = true;
                print_login(&connector, &login, bind);
            }
            Err(LdapError::NotFound) => println!("  no entry matches {username:?}"),
            Err(e) => {
                println!("  refused: {e}");
                println!("  {}", hint(&e));
            }
        }
    }
    Ok(if found_one {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_login(connector: &LdapConnector, login: &LdapLogin, bind: bool) {
    println!("  dn:           {}", login.dn);
    println!("  identity:     {}", login.user.identity);
    println!("  username:     {}", login.user.username);
    println!("  display name: {}", login.user.display_name);
    if let Some(mail) = &login.verified_email {
        println!("  mail:         {mail}");
    }
    let names: Vec<String> = login
        .directory_groups
        .iter()
        .map(|g| g.name.clone().unwrap_or_else(|| g.dn.clone()))
        .collect();
    println!("  groups:       {}", list(&names));
    let mapped: Vec<String> = login.user.groups.iter().map(ToString::to_string).collect();
    println!("  tpa groups:   {}", list(&mapped));
    if connector.config.group_map.is_empty() {
        println!("  (no group_map: directory group names that are valid TPA group names count)");
    }
    println!(
        "  password:     {}",
        if bind {
            "accepted by the directory"
        } else {
            "not checked (add --bind to check it)"
        }
    );
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(", ")
    }
}

fn hint(e: &LdapError) -> &'static str {
    match e {
        LdapError::Unavailable(_) => {
            "check url, ca_file, bind_dn and bind_password_file, and that the directory answers from this host"
        }
        LdapError::Ambiguous => "make user_filter or user_base select one entry per username",
        LdapError::Unusable(_) => {
            "check username_attribute and id_attribute (entryUUID, or objectGUID for Active Directory)"
        }
        LdapError::WrongPassword => "the directory refused this password",
        LdapError::AccountDisabled | LdapError::PasswordExpired => {
            "the account must be fixed in the directory"
        }
        LdapError::EmptyPassword | LdapError::BadPassword | LdapError::BadUsername => {
            "give a non-empty username and password without control characters"
        }
        LdapError::NotFound => "check user_base and user_filter",
    }
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!(
            "no password on standard input; type it and press Enter, or pipe it: printf '%s\\n' \"$PASSWORD\" | tpa-ca ldap test --config F --username U --bind"
        );
    }
    Ok(password)
}
