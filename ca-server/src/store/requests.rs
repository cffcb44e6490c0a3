//! The `requests` and `approvals` tables: access requests as the state machine left them.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use tpa_core::{
    AccessRequest, Approval, ApprovalPath, CriticalOptions, Extension, ForceCommand, Grant,
    GroupName, HostName, HumanDuration, Identity, Principal, RequestId, RequestState, RoleName,
    SourceAddresses, Username, Window,
};

use super::StoreError;
use super::sql::{Row, Sql};
use tpa_core::audit::format_time;

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

fn time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt("time", e))
}

fn opt_time(text: Option<String>) -> Result<Option<DateTime<Utc>>, StoreError> {
    text.as_deref().map(time).transpose()
}

fn path_name(path: ApprovalPath) -> &'static str {
    match path {
        // The column's CHECK predates on-call approvals: such a request is
        // stored as `stages` with its row in `automated_approvals`, which
        // `load` turns back into `OnCall`.
        ApprovalPath::OnCall => "stages",
        other => other.as_str(),
    }
}

fn duration_secs(r: &AccessRequest) -> i64 {
    i64::try_from(r.duration.as_secs()).unwrap_or(i64::MAX)
}

fn hosts_json(hosts: &BTreeSet<HostName>) -> String {
    serde_json::to_string(&hosts.iter().map(HostName::as_str).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".to_owned())
}

/// The grant snapshot as stored (JSON).
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredGrant {
    principals: Vec<String>,
    extensions: Vec<String>,
    force_command: Option<String>,
    source_address: Option<String>,
    cert_ttl_secs: u64,
}

fn grant_json(grant: Option<&Grant>) -> Option<String> {
    let g = grant?;
    let stored = StoredGrant {
        principals: g.principals.iter().map(|p| p.as_str().to_owned()).collect(),
        extensions: g.extensions.iter().map(|e| e.name().to_owned()).collect(),
        force_command: g
            .critical_options
            .force_command
            .as_ref()
            .map(|c| c.as_str().to_owned()),
        source_address: g
            .critical_options
            .source_address
            .as_ref()
            .map(ToString::to_string),
        cert_ttl_secs: g.cert_ttl.as_secs(),
    };
    serde_json::to_string(&stored).ok()
}

fn grant_from(text: Option<String>) -> Result<Option<Grant>, StoreError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let g: StoredGrant = serde_json::from_str(&text).map_err(|e| corrupt("grant", e))?;
    Ok(Some(Grant {
        principals: g
            .principals
            .iter()
            .map(|p| Principal::parse_granted(p).map_err(|e| corrupt("grant principal", e)))
            .collect::<Result<_, _>>()?,
        extensions: g
            .extensions
            .iter()
            .map(|e| Extension::parse(e).map_err(|e| corrupt("grant extension", e)))
            .collect::<Result<_, _>>()?,
        critical_options: CriticalOptions {
            force_command: g
                .force_command
                .as_deref()
                .map(ForceCommand::parse)
                .transpose()
                .map_err(|e| corrupt("grant force-command", e))?,
            source_address: g
                .source_address
                .as_deref()
                .map(SourceAddresses::parse)
                .transpose()
                .map_err(|e| corrupt("grant source-address", e))?,
        },
        cert_ttl: HumanDuration::from_secs(g.cert_ttl_secs)
            .map_err(|e| corrupt("grant cert TTL", e))?,
    }))
}

/// Inserts a new request (and any approvals it already has).
pub fn insert(tx: &impl Sql, r: &AccessRequest, now: DateTime<Utc>) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO requests (id, requester_issuer, requester_subject, requester_username, role, hosts,
             duration_secs, reason, ticket, start_at, path, created_at, pending_until, state, window_start,
             window_end, decided_by_issuer, decided_by_subject, comment, updated_at, grant_scope)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
        &[
            &r.id.as_str(),
            &r.requester.issuer(),
            &r.requester.subject(),
            &r.requester_username.as_str(),
            &r.role.as_str(),
            &hosts_json(&r.hosts),
            &duration_secs(r),
            &r.reason,
            &r.ticket,
            &r.start.map(format_time),
            &path_name(r.path),
            &format_time(r.created_at),
            &format_time(r.pending_until),
            &r.state.as_str(),
            &r.window.map(|w| format_time(w.start)),
            &r.window.map(|w| format_time(w.end)),
            &r.decided_by.as_ref().map(Identity::issuer),
            &r.decided_by.as_ref().map(Identity::subject),
            &r.comment,
            &format_time(now),
            &grant_json(r.grant.as_ref()),
        ],
    )?;
    super::integrations::save_automated(tx, r)?;
    insert_approvals(tx, r, 0)
}

fn insert_approvals(tx: &impl Sql, r: &AccessRequest, from: usize) -> Result<(), StoreError> {
    for (position, a) in r.approvals.iter().enumerate().skip(from) {
        tx.execute(
            "INSERT INTO approvals (request_id, position, approver_issuer, approver_subject, approver_username,
                 stage, at, content_hash, stage_hash, group_name, comment)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            &[
                &r.id.as_str(),
                &(position as i64),
                &a.approver.issuer(),
                &a.approver.subject(),
                &a.approver_username.as_str(),
                &(a.stage as i64),
                &format_time(a.at),
                &a.content_hash,
                &a.stage_hash,
                &a.group.as_str(),
                &a.comment,
            ],
        )?;
    }
    Ok(())
}

/// Writes a transition: the mutable columns and the approvals. Approvals
/// added since `stored_approvals` are appended; when some were voided
/// (re-approval), the request's approvals are rewritten (the audit trail
/// keeps the voided ones).
pub fn update(
    tx: &impl Sql,
    r: &AccessRequest,
    stored_approvals: usize,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let changed = tx.execute(
        "UPDATE requests SET hosts = ?2, duration_secs = ?3, state = ?4, window_start = ?5, window_end = ?6,
             decided_by_issuer = ?7, decided_by_subject = ?8, comment = ?9, updated_at = ?10,
             grant_scope = ?11, pending_until = ?12
         WHERE id = ?1",
        &[
            &r.id.as_str(),
            &hosts_json(&r.hosts),
            &duration_secs(r),
            &r.state.as_str(),
            &r.window.map(|w| format_time(w.start)),
            &r.window.map(|w| format_time(w.end)),
            &r.decided_by.as_ref().map(Identity::issuer),
            &r.decided_by.as_ref().map(Identity::subject),
            &r.comment,
            &format_time(now),
            &grant_json(r.grant.as_ref()),
            &format_time(r.pending_until),
        ],
    )?;
    if changed != 1 {
        return Err(corrupt(
            "request",
            format!("{} vanished during an update", r.id),
        ));
    }
    // Append only when the stored approvals are exactly the first ones in
    // memory: an approval voided in memory (re-approval) while another is
    // added leaves the count unchanged, so the count alone cannot tell.
    let stored: Vec<(String, String, String)> = tx.query_vec(
        "SELECT approver_issuer, approver_subject, at FROM approvals
         WHERE request_id = ?1 ORDER BY position",
        &[&r.id.as_str()],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    let unchanged_prefix = stored.len() == stored_approvals
        && r.approvals.len() >= stored.len()
        && stored
            .iter()
            .zip(&r.approvals)
            .all(|((issuer, subject, at), a)| {
                a.approver.issuer() == issuer
                    && a.approver.subject() == subject
                    && format_time(a.at) == *at
            });
    if unchanged_prefix {
        insert_approvals(tx, r, stored_approvals)
    } else {
        tx.execute(
            "DELETE FROM approvals WHERE request_id = ?1",
            &[&r.id.as_str()],
        )?;
        insert_approvals(tx, r, 0)
    }
}

const COLUMNS: &str =
    "id, requester_issuer, requester_subject, requester_username, role, hosts, duration_secs,
    reason, ticket, start_at, path, created_at, pending_until, state, window_start, window_end,
    decided_by_issuer, decided_by_subject, comment, grant_scope";

fn from_row(row: &Row<'_, '_>) -> Result<AccessRequest, StoreError> {
    let text = |i: usize| row.get::<String>(i);
    let opt = |i: usize| row.get::<Option<String>>(i);
    let id = request_id(&text(0)?)?;
    let requester = Identity::new(&text(1)?, &text(2)?).map_err(|e| corrupt("requester", e))?;
    let hosts: Vec<String> = serde_json::from_str(&text(5)?).map_err(|e| corrupt("hosts", e))?;
    let hosts = hosts
        .iter()
        .map(|h| HostName::parse(h).map_err(|e| corrupt("host", e)))
        .collect::<Result<BTreeSet<_>, _>>()?;
    let secs: i64 = row.get(6)?;
    let duration = HumanDuration::from_secs(u64::try_from(secs).unwrap_or(0))
        .map_err(|e| corrupt("duration", e))?;
    let path = match text(10)?.as_str() {
        "auto" => ApprovalPath::Auto,
        "stages" => ApprovalPath::Stages,
        "break_glass" => ApprovalPath::BreakGlass,
        other => return Err(corrupt("path", other)),
    };
    let state = RequestState::parse(&text(13)?).ok_or_else(|| corrupt("state", "unknown"))?;
    let window = match (opt_time(opt(14)?)?, opt_time(opt(15)?)?) {
        (Some(start), Some(end)) => Some(Window { start, end }),
        _ => None,
    };
    let decided_by = match (opt(16)?, opt(17)?) {
        (Some(i), Some(s)) => Some(Identity::new(&i, &s).map_err(|e| corrupt("decided_by", e))?),
        _ => None,
    };
    Ok(AccessRequest {
        id,
        requester,
        requester_username: Username::parse(&text(3)?)
            .map_err(|e| corrupt("requester_username", e))?,
        role: RoleName::parse(&text(4)?).map_err(|e| corrupt("role", e))?,
        hosts,
        duration,
        reason: text(7)?,
        ticket: opt(8)?,
        start: opt_time(opt(9)?)?,
        path,
        grant: grant_from(opt(19)?)?,
        created_at: time(&text(11)?)?,
        pending_until: time(&text(12)?)?,
        state,
        approvals: Vec::new(),
        automated: None,
        window,
        decided_by,
        comment: opt(18)?,
    })
}

fn approval_from(row: &Row<'_, '_>) -> Result<(i64, Approval), StoreError> {
    let stage: i64 = row.get(3)?;
    let position: i64 = row.get(6)?;
    let approval = Approval {
        approver: Identity::new(&row.get::<String>(0)?, &row.get::<String>(1)?)
            .map_err(|e| corrupt("approver", e))?,
        approver_username: Username::parse(&row.get::<String>(2)?)
            .map_err(|e| corrupt("approver", e))?,
        stage: usize::try_from(stage).map_err(|e| corrupt("stage", e))?,
        // Approvals stored before stage fingerprints existed match no
        // stage: they no longer count.
        stage_hash: row.get::<Option<String>>(7)?.unwrap_or_default(),
        group: match row.get::<Option<String>>(8)? {
            Some(g) => GroupName::parse(&g).map_err(|e| corrupt("approval group", e))?,
            None => GroupName::parse("unrecorded").map_err(|e| corrupt("group", e))?,
        },
        comment: row.get(9)?,
        at: time(&row.get::<String>(4)?)?,
        content_hash: row.get(5)?,
    };
    Ok((position, approval))
}

/// What [`approval_from`] reads, in its order.
const APPROVAL_COLUMNS: &str = "approver_issuer, approver_subject, approver_username, stage, at,
    content_hash, position, stage_hash, group_name, comment";

/// Gives `r` its approvals in their order and its on-call approval.
fn attach(
    r: &mut AccessRequest,
    mut approvals: Vec<(i64, Approval)>,
    automated: Option<tpa_core::AutomatedApproval>,
) {
    // Sorted here rather than with ORDER BY: SQLite re-prepares a statement
    // whose ORDER BY column is pinned by a bound parameter on every rebind.
    approvals.sort_by_key(|(position, _)| *position);
    r.approvals
        .extend(approvals.into_iter().map(|(_, approval)| approval));
    if r.path == ApprovalPath::Stages {
        r.automated = automated;
        if r.automated.is_some() {
            r.path = ApprovalPath::OnCall;
        }
    }
}

/// One request with its approvals.
pub fn load(conn: &impl Sql, id: &RequestId) -> Result<Option<AccessRequest>, StoreError> {
    Ok(load_many(conn, [id])?.remove(id))
}

/// Several requests with their approvals, in two or three statements
/// whatever their number (issue 15: the issuance batch reads its requests
/// once, not once per certificate). Ids not found are absent.
pub fn load_many<'a>(
    conn: &impl Sql,
    ids: impl IntoIterator<Item = &'a RequestId>,
) -> Result<HashMap<RequestId, AccessRequest>, StoreError> {
    let ids: BTreeSet<&str> = ids.into_iter().map(RequestId::as_str).collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let list = serde_json::to_string(&ids).map_err(|e| corrupt("request ids", e))?;
    let mut found = conn.query_vec(
        &format!(
            "SELECT {COLUMNS} FROM requests WHERE {}",
            super::sql::in_json_list(conn.engine(), "id", "?1")
        ),
        &[&list],
        from_row,
    )?;
    attach_all(conn, &mut found)?;
    Ok(found.into_iter().map(|r| (r.id.clone(), r)).collect())
}

/// Gives each of `requests` its approvals and on-call approval: one
/// statement for all their approvals, one for their on-call approvals when
/// any may have one.
fn attach_all(conn: &impl Sql, requests: &mut [AccessRequest]) -> Result<(), StoreError> {
    if requests.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = requests.iter().map(|r| r.id.as_str()).collect();
    let list = serde_json::to_string(&ids).map_err(|e| corrupt("request ids", e))?;
    let mut approvals: HashMap<RequestId, Vec<(i64, Approval)>> = HashMap::new();
    conn.query_each(
        &format!(
            "SELECT {APPROVAL_COLUMNS}, request_id FROM approvals WHERE {}",
            super::sql::in_json_list(conn.engine(), "request_id", "?1")
        ),
        &[&list],
        &mut |row| {
            let id = request_id(&row.get::<String>(10)?)?;
            approvals.entry(id).or_default().push(approval_from(row)?);
            Ok(())
        },
    )?;
    let mut automated = if requests.iter().any(|r| r.path == ApprovalPath::Stages) {
        super::integrations::load_automated_many(conn, &list)?
    } else {
        HashMap::new()
    };
    for r in requests {
        let approvals = approvals.remove(&r.id).unwrap_or_default();
        let automated = automated.remove(&r.id);
        attach(r, approvals, automated);
    }
    Ok(())
}

/// When the request last changed (RFC 3339): for a finished request, when it
/// was denied, cancelled or revoked.
pub fn updated_at(conn: &impl Sql, id: &RequestId) -> Result<Option<String>, StoreError> {
    conn.query_opt(
        "SELECT updated_at FROM requests WHERE id = ?1",
        &[&id.as_str()],
        |r| r.get(0),
    )
}

/// Which requests to list.
#[derive(Debug, Clone)]
pub enum Listing<'a> {
    /// A requester's own requests, newest first.
    Requester(&'a Identity),
    /// Every pending request, oldest first (the approvers' inbox).
    Pending,
    /// Every request, newest first.
    All,
}

/// Lists requests with their approvals, at most `limit`.
pub fn list(
    conn: &impl Sql,
    listing: Listing<'_>,
    limit: u32,
) -> Result<Vec<AccessRequest>, StoreError> {
    let limit = i64::from(limit);
    // Each listing binds only the parameters it uses: PostgreSQL cannot type
    // a parameter that no expression gives a type to.
    let mut out = match listing {
        Listing::Requester(who) => conn.query_vec(
            &format!(
                "SELECT {COLUMNS} FROM requests
                 WHERE requester_issuer = ?1 AND requester_subject = ?2
                 ORDER BY created_at DESC, id LIMIT ?3"
            ),
            &[&who.issuer(), &who.subject(), &limit],
            from_row,
        )?,
        Listing::Pending => conn.query_vec(
            &format!(
                "SELECT {COLUMNS} FROM requests WHERE state = 'pending'
                 ORDER BY created_at ASC, id LIMIT ?1"
            ),
            &[&limit],
            from_row,
        )?,
        Listing::All => conn.query_vec(
            &format!("SELECT {COLUMNS} FROM requests ORDER BY created_at DESC, id LIMIT ?1"),
            &[&limit],
            from_row,
        )?,
    };
    attach_all(conn, &mut out)?;
    Ok(out)
}

fn request_id(text: &str) -> Result<RequestId, StoreError> {
    RequestId::parse(text).map_err(|e| corrupt("request id", e))
}

/// An approved grant of `requester` for `role` on exactly `hosts` whose window is still open.
pub fn find_active_grant(
    conn: &impl Sql,
    requester: &Identity,
    role: &RoleName,
    hosts: &BTreeSet<HostName>,
    now: DateTime<Utc>,
) -> Result<Option<RequestId>, StoreError> {
    conn.query_opt(
        "SELECT id FROM requests
         WHERE requester_issuer = ?1 AND requester_subject = ?2 AND role = ?3 AND hosts = ?4
           AND state = 'approved' AND window_end > ?5
         ORDER BY window_end DESC LIMIT 1",
        &[
            &requester.issuer(),
            &requester.subject(),
            &role.as_str(),
            &hosts_json(hosts),
            &format_time(now),
        ],
        |r| request_id(&r.get::<String>(0)?),
    )
}

/// Pending requests whose pending TTL has run out.
pub fn due_for_expiry(
    conn: &impl Sql,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<RequestId>, StoreError> {
    conn.query_vec(
        "SELECT id FROM requests WHERE state = 'pending' AND pending_until <= ?1
         ORDER BY pending_until LIMIT ?2",
        &[&format_time(now), &i64::from(limit)],
        |r| request_id(&r.get::<String>(0)?),
    )
}

#[cfg(test)]
#[path = "requests_tests.rs"]
mod tests;
