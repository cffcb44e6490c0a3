//! ServiceNow Table API: the record with the ticket's number in `incident`
//! or `change_request` (`GET /api/now/table/{table}?sysparm_query=number=…`)
//! must exist in an allowed state; work notes go to
//! `PATCH /api/now/table/{table}/{sys_id}`.

use serde::Deserialize;
use serde_json::json;
use tpa_core::VerifiedEmail;

use super::client::{ProviderClient, ProviderError, endpoint, ticket_auth};
use super::{BoxFuture, TicketAnswer, TicketSystem};
use crate::config::{RoleTicketCheck, TicketSystemConfig};

/// A ServiceNow instance.
#[derive(Debug)]
pub struct ServiceNow {
    config: TicketSystemConfig,
    client: ProviderClient,
}

#[derive(Debug, Deserialize)]
struct Results {
    result: Vec<Record>,
}

#[derive(Debug, Deserialize)]
struct Record {
    sys_id: String,
    number: String,
    state: String,
}

/// Whether `number` is a ServiceNow record number (`INC0010001`,
/// `CHG0030001`): 2 to 10 uppercase letters, then 4 to 15 digits.
pub fn is_record_number(number: &str) -> bool {
    let letters = number.bytes().take_while(u8::is_ascii_uppercase).count();
    let digits = &number[letters..];
    (2..=10).contains(&letters)
        && (4..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The table a number's prefix points at, when the rule allows it.
fn table_for<'r>(number: &str, rule: &'r RoleTicketCheck) -> Option<&'r str> {
    let table = if number.starts_with("INC") {
        "incident"
    } else if number.starts_with("CHG") {
        "change_request"
    } else {
        return None;
    };
    rule.tables.iter().find(|t| *t == table).map(String::as_str)
}

impl ServiceNow {
    /// The instance of `config`, asked through `client`.
    pub fn new(config: TicketSystemConfig, client: ProviderClient) -> Self {
        Self { config, client }
    }

    fn authorize(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        ticket_auth(request, &self.config)
    }

    async fn find(&self, table: &str, number: &str) -> Result<Option<Record>, ProviderError> {
        let url = endpoint(&self.config.url, &["api", "now", "table", table]);
        let query = format!("number={number}");
        let request = self.authorize(self.client.http().get(url).query(&[
            ("sysparm_query", query.as_str()),
            ("sysparm_fields", "sys_id,number,state"),
            ("sysparm_limit", "1"),
        ]))?;
        let answer: Results = self.client.json(request).await?;
        // The query is the provider's; TPA checks the number again.
        Ok(answer.result.into_iter().find(|r| r.number == number))
    }
}

impl TicketSystem for ServiceNow {
    fn check<'a>(
        &'a self,
        key: &'a str,
        rule: &'a RoleTicketCheck,
        _email: Option<&'a VerifiedEmail>,
    ) -> BoxFuture<'a, Result<TicketAnswer, ProviderError>> {
        Box::pin(async move {
            if !is_record_number(key) {
                return Ok(TicketAnswer::Refused {
                    why: format!("{key:?} is not a ServiceNow number such as INC0010001"),
                });
            }
            let Some(table) = table_for(key, rule) else {
                return Ok(TicketAnswer::Refused {
                    why: format!("{key} is not a record of {}", rule.tables.join(" or ")),
                });
            };
            let Some(record) = self.find(table, key).await? else {
                return Ok(TicketAnswer::Refused {
                    why: format!("ServiceNow has no {table} {key}"),
                });
            };
            if !rule.states.contains(&record.state) {
                return Ok(TicketAnswer::Refused {
                    why: format!(
                        "ServiceNow {table} {key} is in state {}; it must be open",
                        record.state
                    ),
                });
            }
            Ok(TicketAnswer::Open {
                id: format!("servicenow {table} sys_id={} number={key}", record.sys_id),
                detail: format!("ServiceNow {table} {key} is open (state {})", record.state),
            })
        })
    }

    fn comment<'a>(
        &'a self,
        key: &'a str,
        rule: &'a RoleTicketCheck,
        text: &'a str,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let table = table_for(key, rule)
                .filter(|_| is_record_number(key))
                .ok_or(ProviderError::NotFound)?;
            let record = self
                .find(table, key)
                .await?
                .ok_or(ProviderError::NotFound)?;
            let url = endpoint(
                &self.config.url,
                &["api", "now", "table", table, &record.sys_id],
            );
            let request = self.authorize(
                self.client
                    .http()
                    .patch(url)
                    .json(&json!({ "work_notes": text })),
            )?;
            self.client.send(request).await.map(drop)
        })
    }

    fn probe(&self) -> BoxFuture<'_, Result<String, ProviderError>> {
        Box::pin(async move {
            let url = endpoint(&self.config.url, &["api", "now", "table", "incident"]);
            let request = self.authorize(
                self.client
                    .http()
                    .get(url)
                    .query(&[("sysparm_fields", "number"), ("sysparm_limit", "1")]),
            )?;
            let answer: Numbers = self.client.json(request).await?;
            Ok(format!(
                "table incident readable ({} record(s) in a 1-record page)",
                answer.result.len()
            ))
        })
    }
}

#[derive(Debug, Deserialize)]
struct Numbers {
    result: Vec<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn record_numbers() {
        for ok in ["INC0010001", "CHG0030001", "RITM0001234"] {
            assert!(super::is_record_number(ok), "{ok}");
        }
        for bad in [
            "",
            "INC",
            "INC12",
            "inc0010001",
            "INC0010001/..",
            "INC 0010001",
            "I0010001",
        ] {
            assert!(!super::is_record_number(bad), "{bad:?}");
        }
    }
}
