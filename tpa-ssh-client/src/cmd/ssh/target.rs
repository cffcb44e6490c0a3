//! `[LOGIN@]HOST` of `tpa-ssh ssh`: split and checked by TPA's grammars.

use anyhow::{Context as _, bail};
use tpa_core::{HostName, Principal};

/// `[LOGIN@]HOST` of `tpa-ssh ssh`, checked before anything else happens: the
/// login goes onto ssh's command line and into the ProxyCommand's shell line,
/// the host onto ssh's command line, so both must match TPA's strict grammars
/// (which also keeps a leading `-` from ever reaching ssh as an option).
pub fn parse(text: &str) -> anyhow::Result<(Option<Principal>, HostName)> {
    let (login, host) = match text.split_once('@') {
        Some((l, h)) => (Some(l), h),
        None => (None, text),
    };
    if host.contains('@') {
        bail!("{text:?} has more than one @: give LOGIN@HOST, e.g. root@web-1");
    }
    let login = login
        .map(|l| {
            if l.is_empty() {
                bail!("{text:?} has an empty login before the @: give LOGIN@HOST, e.g. root@web-1, or just the host");
            }
            Principal::parse(l).with_context(|| format!("bad login {l:?} in {text:?}"))
        })
        .transpose()?;
    if host.is_empty() {
        bail!("{text:?} names no host after the @: give LOGIN@HOST, e.g. root@web-1");
    }
    let host = HostName::parse(host).with_context(|| {
        format!("{host:?} is not a host name as the CA knows it (lowercase, e.g. web-1)")
    })?;
    Ok((login, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    // issue 12: `tpa-ssh ssh @web-1`, `root@`, `root@@web-1`,
    // `-oProxyCommand=x@web-1` and a host with a space are refused before
    // anything runs (e2e: the ssh_targets module).
    #[test]
    fn login_at_host_is_split_and_checked() {
        let ok = |text: &str, login: Option<&str>, host: &str| {
            let (l, h) = parse(text).unwrap();
            assert_eq!(
                (l.as_ref().map(Principal::as_str), h.as_str()),
                (login, host),
                "{text}"
            );
        };
        ok("web-1", None, "web-1");
        ok("root@web-1", Some("root"), "web-1");
        ok("deploy@db-2.prod", Some("deploy"), "db-2.prod");
        let err = |text: &str, words: &str| {
            let e = format!("{:#}", parse(text).unwrap_err());
            assert!(e.contains(words), "{text}: {e}");
        };
        err("@web-1", "empty login");
        err("root@", "names no host");
        err("root@@web-1", "more than one @");
        err("-oProxyCommand=x@web-1", "bad login");
        err("web 1", "not a host name");
        err("root@web 1", "not a host name");
        err("-oProxyCommand=x", "not a host name");
    }
}
