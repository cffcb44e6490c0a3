//! `tpa-ca report access --since T [--until T] --format csv|json`: who had
//! which role on which hosts in a period (every grant whose window overlaps
//! it), with reasons, tickets, approvers, window and how it ended.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use tpa_core::api::AccessReport;

use crate::cli::ReportFormat;
use crate::config::Config;
use crate::workflow::report::access_report;

fn parse_time(flag: &str, value: &str) -> anyhow::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| {
            format!("{flag} {value:?} is not an RFC 3339 time such as 2026-11-01T00:00:00Z")
        })
}

pub(super) fn run(
    config: &Path,
    since: &str,
    until: Option<&str>,
    format: ReportFormat,
) -> anyhow::Result<ExitCode> {
    let now = Utc::now();
    let since = parse_time("--since", since)?;
    let until = until
        .map(|u| parse_time("--until", u))
        .transpose()?
        .unwrap_or(now);
    let config = Config::load(config)?;
    let conn = super::database::open(&config)?;
    let report = access_report(&conn, since, until, now).map_err(|e| anyhow::anyhow!("{e}"))?;
    match format {
        ReportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).context("cannot encode the report")?
        ),
        ReportFormat::Csv => print!("{}", csv(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

/// The header of the CSV form.
pub const CSV_HEADER: &str = "request,user,identity,role,hosts,reason,ticket,path,approvers,window_start,window_end,ended,ended_by,end_comment,certificates";

/// RFC 4180 CSV: one line per grant; lists joined with spaces.
pub fn csv(report: &AccessReport) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push_str("\r\n");
    for g in &report.grants {
        let fields = [
            g.request.clone(),
            g.user.clone(),
            g.identity.clone(),
            g.role.clone(),
            g.hosts.join(" "),
            g.reason.clone(),
            g.ticket.clone().unwrap_or_default(),
            g.path.clone(),
            g.approvers.join(" "),
            g.window_start.clone(),
            g.window_end.clone(),
            g.ended.clone(),
            g.ended_by.clone().unwrap_or_default(),
            g.end_comment.clone().unwrap_or_default(),
            g.certificates.join(" "),
        ];
        let line: Vec<String> = fields.iter().map(|f| field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// Quotes a field when needed; a leading `=`, `+`, `-`, `@` gets a `'` so a
/// spreadsheet does not run a requester's reason as a formula.
fn field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\r', '\n']) || value.starts_with('\'') {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn fields_are_quoted_and_defused() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=HYPERLINK(1)"), "\"'=HYPERLINK(1)\"");
        assert_eq!(field("line\nbreak"), "\"line\nbreak\"");
    }
}
