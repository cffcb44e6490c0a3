//! `tpa-ca integrations test`: asks each configured on-call provider (per
//! schedule its roles use) and ticket system once, read-only, sends the
//! policy hook one signed test call (`"stage": "test"`), and lists the alert
//! destinations (sending each one test alert only with `--send-test-alert`:
//! an alert has no read-only form, and may page someone); prints what each
//! answered; exit status 1 when one did not answer properly.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use rand::RngExt as _;

use crate::config::{Config, OnCallKind, TicketKind};
use crate::integrations::Integrations;
use crate::policy_hook::{PolicyHook, Verdict};

pub(super) fn run_test(config: &Path, send_test_alert: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    let integrations =
        Integrations::from_config(&config.integrations).map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let failed = runtime.block_on(async {
        probe_all(&integrations).await
            + probe_hook(&config).await
            + alert_destinations(&config, send_test_alert).await
    });
    let nothing = integrations.config().on_call.is_empty()
        && integrations.config().ticket_systems.is_empty()
        && config.policy_hook.is_none()
        && config.alert_destinations.is_empty();
    if nothing {
        println!(
            "no [[on_call]], [[ticket_systems]], [policy_hook] or [[alert_destinations]] configured; nothing to test"
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("tpa-ca: error: {failed} integration check(s) failed; see above");
        ExitCode::FAILURE
    })
}

/// Where a URL points, without its path or query (a hook's or Slack's path
/// may be a secret).
fn origin(url: &reqwest::Url) -> String {
    url.origin().ascii_serialization()
}

/// Sends the policy hook its test call; 1 when it did not answer with a
/// valid, signed decision carrying the call's nonce.
async fn probe_hook(config: &Config) -> usize {
    let Some(hook_config) = &config.policy_hook else {
        return 0;
    };
    let label = format!("policy_hook ({})", origin(&hook_config.url));
    let hook = match PolicyHook::new(hook_config.clone()) {
        Ok(hook) => hook,
        Err(e) => {
            println!("{label}: FAILED: {e}");
            return 1;
        }
    };
    let call = crate::policy_hook::test_call(hook.first_role(&config.policy), chrono::Utc::now());
    let verified = "signature and nonce verified";
    match hook.ask(call).await {
        Verdict::Allow => {
            println!("{label}: ok: answered allow to the test call ({verified})");
            0
        }
        Verdict::Deny { reason } => {
            println!("{label}: ok: answered deny to the test call: {reason} ({verified})");
            0
        }
        Verdict::Unavailable { why } => {
            println!("{label}: FAILED: {why}");
            1
        }
    }
}

/// Lists the alert destinations; with `send`, sends each one test alert and
/// returns how many did not take it.
async fn alert_destinations(config: &Config, send: bool) -> usize {
    let run: [u8; 8] = rand::rng().random();
    let alert = crate::alerts::test_alert::test_alert(&hex::encode(run), chrono::Utc::now());
    let client = match crate::notify::delivery_client() {
        Ok(client) => client,
        Err(e) => {
            println!("alert_destinations: FAILED: {e}");
            return usize::from(send && !config.alert_destinations.is_empty());
        }
    };
    let mut failed = 0;
    for d in &config.alert_destinations {
        let label = format!(
            "alert_destinations {} ({} {})",
            d.name,
            d.kind.as_str(),
            origin(&d.url)
        );
        if !send {
            println!(
                "{label}: not called: an alert has no read-only form and would page whoever is on call there; --send-test-alert sends one test alert"
            );
            continue;
        }
        match crate::alerts::test_alert::send(&client, d, &alert).await {
            Ok(answer) => println!(
                "{label}: ok: test alert sent (dedup key {}): {answer}",
                alert.dedup_key
            ),
            Err(answer) => {
                failed += 1;
                println!("{label}: FAILED: test alert not taken: {answer}");
            }
        }
    }
    failed
}

/// Probes everything; returns how many probes failed.
async fn probe_all(integrations: &Integrations) -> usize {
    let config = integrations.config();
    let mut failed = 0;
    for p in &config.on_call {
        let kind = match p.kind {
            OnCallKind::PagerDuty => "pagerduty",
            OnCallKind::Opsgenie => "opsgenie",
        };
        let schedules: BTreeSet<&str> = config
            .role_on_call
            .values()
            .filter(|r| r.provider == p.name)
            .map(|r| r.schedule.as_str())
            .collect();
        let label = format!("on_call {} ({kind} {})", p.name, p.url);
        if schedules.is_empty() {
            println!("{label}: used by no role; not asked");
        }
        let Some(provider) = integrations.on_call_provider(&p.name) else {
            continue;
        };
        for schedule in schedules {
            match provider.probe(schedule).await {
                Ok(found) => println!("{label}: ok: {found}"),
                Err(e) => {
                    failed += 1;
                    println!("{label}: FAILED: schedule {schedule}: the provider {e}");
                }
            }
        }
    }
    for t in &config.ticket_systems {
        let kind = match t.kind {
            TicketKind::Jira => "jira",
            TicketKind::ServiceNow => "servicenow",
        };
        let label = format!("ticket_systems {} ({kind} {})", t.name, t.url);
        let Some(system) = integrations.ticket_system(&t.name) else {
            continue;
        };
        match system.probe().await {
            Ok(found) => println!("{label}: ok: {found}"),
            Err(e) => {
                failed += 1;
                println!("{label}: FAILED: the system {e}");
            }
        }
    }
    failed
}
