//! `tpa-ca integrations test`: asks each configured on-call provider (per
//! schedule its roles use) and ticket system once, read-only, and prints
//! what it found; exit status 1 when one did not answer.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::config::{Config, OnCallKind, TicketKind};
use crate::integrations::Integrations;

pub(super) fn run_test(config: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    let integrations =
        Integrations::from_config(&config.integrations).map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let failed = runtime.block_on(probe_all(&integrations));
    if integrations.config().on_call.is_empty() && integrations.config().ticket_systems.is_empty() {
        println!("no [[on_call]] or [[ticket_systems]] configured; nothing to test");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("tpa-ca: error: {failed} provider check(s) failed; see above");
        ExitCode::FAILURE
    })
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
