//! The request use cases as the web pages and the JSON API call them: one
//! async function each over [`Services`] (the database, the configuration,
//! the policy hook, the decision rate limit and the wake-ups), so that a
//! handler is its extractors plus one call and the two faces share one path.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tpa_core::api::RequestView;
use tpa_core::{AccessRequest, HostName, HumanDuration, Narrowing, RequestId, RequestInput, User};

use super::capability::Admin;
use super::db;
use super::error::{WorkflowError, refused};
use super::requests::{self as wf, ApproveInput, Submitted};
use crate::auth::identity::Identities;
use crate::auth::rate_limit::DecisionRateLimiter;
use crate::config::Config;
use crate::integrations::{Integrations, Prechecks};
use crate::notify::{OutboxBell, Waiters};
use crate::policy_hook::PolicyHook;
use crate::refusal::Refusal;
use crate::signer::Signer;
use crate::store::{Conn, Database, Session};

/// What the request use cases reach: shared handles, cheap to clone.
#[derive(Debug, Clone)]
pub struct Services {
    /// The configured store (SQLite or PostgreSQL).
    pub database: Arc<Database>,
    /// The configuration (policy, workflow settings, deadlines).
    pub config: Arc<Config>,
    /// Identity connectors (to re-read users).
    pub identities: Arc<Identities>,
    /// The CA key.
    pub signer: Arc<Signer>,
    /// On-call and ticket providers.
    pub integrations: Arc<Integrations>,
    /// The external policy hook, when configured.
    pub policy_hook: Option<Arc<PolicyHook>>,
    /// Decisions per user per minute.
    pub decision_limiter: Arc<DecisionRateLimiter>,
    /// Clients long-polling a request.
    pub waiters: Waiters,
    /// Wakes the outbox senders.
    pub bell: OutboxBell,
}

/// A decision on a request inside the writer's transaction.
type Decision = Box<
    dyn FnOnce(
            &Services,
            &mut Session<'_>,
            &User,
            &RequestId,
            &str,
            DateTime<Utc>,
        ) -> Result<AccessRequest, WorkflowError>
        + Send,
>;

impl Services {
    /// A use case on the writer connection.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Session<'_>) -> Result<T, WorkflowError> + Send + 'static,
    ) -> Result<T, WorkflowError> {
        db::write(&self.database, self.config.write_deadline, f).await
    }

    /// A pure read on the reader pool.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Conn) -> Result<T, WorkflowError> + Send + 'static,
    ) -> Result<T, WorkflowError> {
        db::read(&self.database, self.config.write_deadline, f).await
    }

    /// Submits a request for `user` (policy hook, on-call and ticket checks
    /// first, outside the transaction), wakes the webhook senders, then runs
    /// the automated check.
    pub async fn submit(
        &self,
        user: User,
        input: RequestInput,
        source: String,
        now: DateTime<Utc>,
    ) -> Result<Submitted, WorkflowError> {
        self.hook_at_submission(&user, &input, &source, now).await?;
        let prechecks = self.prechecks(&user, &input, now).await?;
        let st = self.clone();
        let mut submitted = self
            .write(move |conn| {
                wf::submit_with(
                    conn,
                    (&st.config.policy, &st.config.workflow),
                    &user,
                    &input,
                    &source,
                    now,
                    &prechecks,
                )
            })
            .await?;
        self.bell.ring();
        if !submitted.existing {
            submitted.request = self.automated_check(submitted.request).await;
        }
        Ok(submitted)
    }

    /// Asks the on-call and ticket providers what the request's role needs
    /// (issue 17), before the submission's transaction; nothing for other roles.
    async fn prechecks(
        &self,
        user: &User,
        input: &RequestInput,
        now: DateTime<Utc>,
    ) -> Result<Prechecks, WorkflowError> {
        if !self.integrations.applies_to(input) {
            return Ok(Prechecks::default());
        }
        let (st, who) = (self.clone(), user.clone());
        let email = self
            .read(move |conn| {
                Ok(crate::integrations::emails::identity_email(
                    conn, &st.config, &who,
                )?)
            })
            .await?;
        Ok(self
            .integrations
            .precheck(&self.config.policy, user, email.as_ref(), input, now)
            .await)
    }

    /// The view of `r` with the checks recorded at its submission.
    pub async fn view_with_checks(
        &self,
        r: &AccessRequest,
        now: DateTime<Utc>,
    ) -> Result<RequestView, WorkflowError> {
        let id = r.id.clone();
        let rows = self
            .read(move |conn| Ok(crate::store::integrations::checks(conn, &id)?))
            .await?;
        let mut view = RequestView::of(r, &self.config.policy, now);
        view.checks = crate::integrations::check_views(&rows);
        Ok(view)
    }

    /// Approves `id` as `user`; the stage just completed may open the
    /// automated check.
    pub async fn approve(
        &self,
        user: User,
        id: RequestId,
        input: ApproveInput,
        source: String,
    ) -> Result<AccessRequest, WorkflowError> {
        let decision: Decision = Box::new(move |st, conn, user, id, source, now| {
            wf::approve(
                conn,
                &st.config.policy,
                &st.identities,
                user,
                id,
                input,
                source,
                now,
            )
            .map(|(r, _)| r)
        });
        let r = self.decide(user, id, source, decision).await?;
        Ok(self.automated_check(r).await)
    }

    /// Denies `id` as `user` with `comment`.
    pub async fn deny(
        &self,
        user: User,
        id: RequestId,
        comment: String,
        source: String,
    ) -> Result<AccessRequest, WorkflowError> {
        let decision: Decision = Box::new(move |st, conn, user, id, source, now| {
            wf::deny(conn, &st.config.policy, user, id, &comment, source, now)
        });
        self.decide(user, id, source, decision).await
    }

    /// Clears the post-incident review of a break-glass grant.
    pub async fn review(
        &self,
        user: User,
        id: RequestId,
        comment: String,
        source: String,
    ) -> Result<AccessRequest, WorkflowError> {
        let decision: Decision = Box::new(move |st, conn, user, id, source, now| {
            super::reviews::review_break_glass(
                conn,
                &st.config.policy,
                user,
                id,
                &comment,
                source,
                now,
            )
        });
        self.decide(user, id, source, decision).await
    }

    /// An approver of the role, or an administrator, revokes `id`: the grant
    /// ends and its certificates are revoked.
    pub async fn revoke(
        &self,
        user: User,
        id: RequestId,
        comment: String,
        source: String,
    ) -> Result<AccessRequest, WorkflowError> {
        let decision: Decision = Box::new(move |st, conn, user, id, source, now| {
            super::grants::revoke_grant(
                conn,
                &st.config.policy,
                user,
                Admin::check(&st.config, user),
                id,
                &comment,
                &st.signer.fingerprint(),
                source,
                now,
            )
        });
        self.decide(user, id, source, decision).await
    }

    /// The requester cancels `id`.
    pub async fn cancel(
        &self,
        user: User,
        id: RequestId,
        source: String,
    ) -> Result<AccessRequest, WorkflowError> {
        let decision: Decision = Box::new(move |st, conn, user, id, source, now| {
            wf::cancel(conn, &st.config.policy, user, id, source, now)
        });
        self.decide(user, id, source, decision).await
    }

    /// Checks the decision rate limit, runs a decision, then wakes waiting
    /// clients and webhook senders. Every decision of the API and the web
    /// pages passes here.
    async fn decide(
        &self,
        user: User,
        id: RequestId,
        source: String,
        decision: Decision,
    ) -> Result<AccessRequest, WorkflowError> {
        let key = format!("{}\n{}", user.identity.issuer(), user.identity.subject());
        self.decision_limiter
            .check_and_record(&key, Instant::now())
            .map_err(|wait| WorkflowError::TooManyDecisions {
                retry_after_secs: wait.as_secs().max(1),
            })?;
        let now = Utc::now();
        let st = self.clone();
        let wake_id = id.clone();
        let r = self
            .write(move |conn| decision(&st, conn, &user, &id, &source, now))
            .await;
        // A refusal may have committed an expiry; waking is harmless either way.
        self.waiters.wake(&wake_id);
        self.bell.ring();
        r
    }
}

/// Parses how an approver narrows a request (the API's body and the web form alike).
pub fn narrowing(
    duration: Option<&str>,
    hosts: Option<&[String]>,
) -> Result<Narrowing, WorkflowError> {
    let duration = duration
        .map(HumanDuration::parse)
        .transpose()
        .map_err(|e| refused(Refusal::BadDuration, e))?;
    let hosts = hosts
        .map(|hosts| {
            hosts
                .iter()
                .map(|h| HostName::canonical(h).map_err(|e| refused(Refusal::BadHost, e)))
                .collect::<Result<BTreeSet<_>, _>>()
        })
        .transpose()?;
    Ok(Narrowing { duration, hosts })
}
