//! DynamoDB single-table state store.
//!
//! | item            | pk                                  | sk      | attributes                              |
//! |-----------------|-------------------------------------|---------|-----------------------------------------|
//! | user state      | `USER#<source>#<tenant>#<user id>`  | `STATE` | `version`, `doc` (JSON), `invite_shard` + `invite_expires_at` (only while an invitation is pending) |
//! | processed event | `EVENT#<dedupe key>`                | `EVENT` | `expires_at` (TTL, epoch seconds)       |
//! | cursor          | `CURSOR#<name>`                     | `CURSOR`| `value`, `updated_at`                   |
//! | claim           | `CLAIM#<scim id>`                   | `CLAIM` | `owner` (user storage id): whose record claims the target account |
//! | document        | `DOC#<name>`                        | `DOC`   | `value`, `version` (the deprovisioning ledger) |
//! | history entry   | `HIST#<source>#<tenant>#<user id>`  | `<epoch ms, 15 digits>#<event id>` | `doc` (JSON), `expires_at` (TTL) |
//! | fingerprint     | `FP#<keyed fingerprint of userName>`| `<user storage id>` | `expires_at` (TTL): email → user for `scim-relay history` |
//!
//! The user write and the event record go in one transaction, conditional on the version read.
//! The global secondary index [`INVITES_INDEX`] (`invite_shard`, `invite_expires_at`) is sparse:
//! only users with a pending invitation carry its keys, so the sweeper's query reads those alone.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, PutRequest, TransactWriteItem, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};

use crate::state::{
    FirstRead, HistoryRecord, InvitationCounts, ProcessedEvent, StateStore, StoreError, SweepStore,
    UserKey, UserState,
};

/// The sparse index of pending invitations (`infra/template.yaml` creates it).
pub const INVITES_INDEX: &str = "invites-due";
/// The one partition of that index: pending invitations are few, and read in expiry order.
const INVITE_SHARD: &str = "PENDING";

#[derive(Clone, Debug)]
pub struct DynamoStateStore {
    client: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
}

fn user_pk(key: &UserKey) -> String {
    format!("USER#{}", key.storage_id())
}

fn history_pk(key: &UserKey) -> String {
    format!("HIST#{}", key.storage_id())
}

fn fingerprint_pk(fingerprint: &str) -> String {
    format!("FP#{fingerprint}")
}

fn event_pk(key: &str) -> String {
    format!("EVENT#{key}")
}

impl DynamoStateStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn event_item(event: &ProcessedEvent) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_string(), s(event_pk(&event.key))),
            ("sk".to_string(), s("EVENT")),
            ("expires_at".to_string(), n(event.expires_at.timestamp())),
        ])
    }

    fn user_item(
        key: &UserKey,
        state: &UserState,
    ) -> Result<HashMap<String, AttributeValue>, StoreError> {
        let doc = serde_json::to_string(state).map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut item = HashMap::from([
            ("pk".to_string(), s(user_pk(key))),
            ("sk".to_string(), s("STATE")),
            ("version".to_string(), n(state.version)),
            ("doc".to_string(), s(doc)),
            ("active".to_string(), AttributeValue::Bool(state.active)),
            ("updated_at".to_string(), n(state.updated_at.timestamp())),
        ]);
        if let Some(id) = &state.scim_id {
            item.insert("scim_id".into(), s(id.clone()));
        }
        // Operators list held users with a filtered scan on this.
        if state.held.is_some() {
            item.insert("held".into(), AttributeValue::Bool(true));
        }
        if let Some(due) = state.invite.as_ref().and_then(|i| i.due_at()) {
            item.insert("invite_shard".into(), s(INVITE_SHARD));
            item.insert("invite_expires_at".into(), n(due.timestamp()));
        }
        Ok(item)
    }
}

type Item = HashMap<String, AttributeValue>;

impl DynamoStateStore {
    /// One item by key, read consistently.
    async fn get(&self, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        Ok(out.item)
    }

    /// The items of partition `pk` whose `expires_at` is still ahead of `now` (TTL deletes
    /// within days, not at once: what has expired is not shown); with `newest`, at most that
    /// many, latest sort key first.
    async fn live_items(
        &self,
        pk: String,
        now: DateTime<Utc>,
        newest: Option<usize>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .filter_expression("expires_at > :now")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":now", n(now.timestamp()));
        if let Some(limit) = newest {
            query = query
                .scan_index_forward(false)
                .limit(i32::try_from(limit).unwrap_or(i32::MAX));
        }
        Ok(query
            .send()
            .await
            .map_err(backend)?
            .items
            .unwrap_or_default())
    }

    /// Every item whose `pk` starts with `prefix` (and passes `extra`), page after page; only
    /// the rare reads of the sweeper use it.
    async fn scan_prefix(
        &self,
        prefix: &str,
        extra: Option<(&str, &str, AttributeValue)>,
        projection: &str,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        self.scan_each(prefix, extra, projection, |item| {
            items.push(item.clone());
            Ok(())
        })
        .await?;
        Ok(items)
    }

    /// Every item whose key starts with `prefix`, handed to `each` page by page: a census of
    /// 100,000 users holds one page of at most 1 MB, not the table.
    async fn scan_each(
        &self,
        prefix: &str,
        extra: Option<(&str, &str, AttributeValue)>,
        projection: &str,
        mut each: impl FnMut(&Item) -> Result<(), StoreError> + Send,
    ) -> Result<(), StoreError> {
        let mut start: Option<Item> = None;
        loop {
            let mut scan = self
                .client
                .scan()
                .table_name(&self.table)
                .expression_attribute_values(":prefix", s(prefix))
                .projection_expression(projection)
                .set_exclusive_start_key(start);
            scan = match &extra {
                Some((condition, name, value)) => scan
                    .filter_expression(format!("begins_with(pk, :prefix) AND {condition}"))
                    .expression_attribute_values(*name, value.clone()),
                None => scan.filter_expression("begins_with(pk, :prefix)"),
            };
            let out = scan.send().await.map_err(backend)?;
            for item in out.items() {
                each(item)?;
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(()),
            }
        }
    }
}

/// The target-credential breaker: while open, the worker does not consume (Lambda cannot stop
/// its own event source without a circular template, so it hands batches back unworked).
const BREAKER_PK: &str = "BREAKER#target-credential";

#[async_trait]
impl crate::breaker::CredentialBreaker for DynamoStateStore {
    async fn open_until(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError> {
        let until = self
            .get(BREAKER_PK.to_string(), "BREAKER")
            .await?
            .and_then(|i| {
                i.get("open_until")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<i64>().ok())
            })
            .and_then(|secs| DateTime::from_timestamp(secs, 0));
        Ok(until.filter(|u| *u > now))
    }

    async fn open(&self, until: DateTime<Utc>) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(BREAKER_PK))
            .item("sk", s("BREAKER"))
            .item("open_until", n(until.timestamp()))
            .item("expires_at", n(until.timestamp() + 86_400))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }
}

/// A dedupe record still in force at `now`: TTL deletion is lazy (up to days), so expiry is
/// decided from the stored time.
fn live_event(item: Option<&Item>, now: DateTime<Utc>) -> bool {
    item.and_then(|i| {
        i.get("expires_at")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
    })
    .is_some_and(|expires| expires > now.timestamp())
}

/// A history entry's item, and (with a fingerprint) the user's filing under it.
fn history_items(
    key: &UserKey,
    fingerprint: Option<&str>,
    entry: &crate::history::HistoryEntry,
    expires_at: DateTime<Utc>,
) -> Result<Vec<Item>, StoreError> {
    let doc = serde_json::to_string(entry).map_err(|e| StoreError::Backend(e.to_string()))?;
    // Sorted by time within the user's partition; the event id keeps two in one millisecond
    // apart.
    let sk = format!(
        "{:015}#{}",
        entry.at.timestamp_millis().max(0),
        entry.event_id
    );
    let mut items = vec![HashMap::from([
        ("pk".to_string(), s(history_pk(key))),
        ("sk".to_string(), s(sk)),
        ("doc".to_string(), s(doc)),
        ("expires_at".to_string(), n(expires_at.timestamp())),
    ])];
    if let Some(fp) = fingerprint {
        items.push(HashMap::from([
            ("pk".to_string(), s(fingerprint_pk(fp))),
            ("sk".to_string(), s(key.storage_id())),
            ("expires_at".to_string(), n(expires_at.timestamp())),
        ]));
    }
    Ok(items)
}

fn document_pk(name: &str) -> String {
    format!("DOC#{name}")
}

/// A document item's value and version.
fn document_of(name: &str, item: &Item) -> Result<(String, u64), StoreError> {
    let value = item.get("value").and_then(|v| v.as_s().ok()).cloned();
    let version = item
        .get("version")
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match (value, version) {
        (Some(value), Some(version)) => Ok((value, version)),
        _ => Err(StoreError::Backend(format!(
            "document {name} is unreadable"
        ))),
    }
}

fn claim_pk(scim_id: &str) -> String {
    format!("CLAIM#{scim_id}")
}

fn group_pk(name: &str) -> String {
    format!("GROUP#{name}")
}

#[async_trait]
impl StateStore for DynamoStateStore {
    async fn record_history(
        &self,
        key: &UserKey,
        fingerprint: Option<&str>,
        entry: &crate::history::HistoryEntry,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let put = |item: Item| -> Result<WriteRequest, StoreError> {
            Ok(WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .set_item(Some(item))
                        .build()
                        .map_err(backend)?,
                )
                .build())
        };
        let writes = history_items(key, fingerprint, entry, expires_at)?
            .into_iter()
            .map(put)
            .collect::<Result<Vec<_>, _>>()?;
        // One request for both items.
        let out = self
            .client
            .batch_write_item()
            .request_items(&self.table, writes)
            .send()
            .await
            .map_err(backend)?;
        match out.unprocessed_items() {
            Some(left) if left.values().any(|w| !w.is_empty()) => Err(StoreError::Backend(
                "history write throttled; entry not recorded".into(),
            )),
            _ => Ok(()),
        }
    }

    async fn history(
        &self,
        key: &UserKey,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<crate::history::HistoryEntry>, StoreError> {
        let items = self.live_items(history_pk(key), now, Some(limit)).await?;
        items
            .iter()
            .map(|item| {
                let doc = item
                    .get("doc")
                    .and_then(|v| v.as_s().ok())
                    .ok_or_else(|| StoreError::Backend("history item without doc".into()))?;
                serde_json::from_str(doc)
                    .map_err(|e| StoreError::Backend(format!("history entry unreadable: {e}")))
            })
            .collect()
    }

    async fn users_by_fingerprint(
        &self,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<UserKey>, StoreError> {
        let items = self
            .live_items(fingerprint_pk(fingerprint), now, None)
            .await?;
        Ok(items
            .iter()
            .filter_map(|item| item.get("sk").and_then(|v| v.as_s().ok()))
            .filter_map(|id| UserKey::from_storage_id(id))
            .collect())
    }

    async fn group_id(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .get(group_pk(name), "GROUP")
            .await?
            .and_then(|i| i.get("scim_id").and_then(|v| v.as_s().ok()).cloned()))
    }

    async fn record_group(&self, name: &str, id: &str) -> Result<String, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(group_pk(name)))
            .item("sk", s("GROUP"))
            .item("scim_id", s(id))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(id.to_string()),
            Err(e) => {
                let lost = e
                    .as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception());
                if !lost {
                    return Err(backend(e));
                }
                self.group_id(name)
                    .await?
                    .ok_or_else(|| StoreError::Backend("group record vanished".into()))
            }
        }
    }

    async fn forget_group(&self, name: &str, id: &str) -> Result<(), StoreError> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(group_pk(name)))
            .key("sk", s("GROUP"))
            .condition_expression("scim_id = :id")
            .expression_attribute_values(":id", s(id))
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(backend(e)),
        }
    }

    async fn load_user(&self, key: &UserKey) -> Result<Option<UserState>, StoreError> {
        self.get(user_pk(key), "STATE")
            .await?
            .as_ref()
            .map(state_doc)
            .transpose()
    }

    async fn event_seen(&self, event_key: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(live_event(
            self.get(event_pk(event_key), "EVENT").await?.as_ref(),
            now,
        ))
    }

    /// All in one `BatchGetItem`, strongly consistent like the single reads. Keys DynamoDB
    /// leaves unprocessed (throttling) are read one by one instead.
    async fn first_read(
        &self,
        event_key: &str,
        key: &UserKey,
        document: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<FirstRead, StoreError> {
        let (event, user) = (event_pk(event_key), user_pk(key));
        let doc = document.map(document_pk);
        let keys = [
            Some((event.clone(), "EVENT")),
            Some((user.clone(), "STATE")),
            doc.clone().map(|pk| (pk, "DOC")),
        ]
        .into_iter()
        .flatten()
        .map(|(pk, sk)| HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))]))
        .collect::<Vec<_>>();
        let out = self
            .client
            .batch_get_item()
            .request_items(
                &self.table,
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(backend)?,
            )
            .send()
            .await
            .map_err(backend)?;
        if out
            .unprocessed_keys()
            .is_some_and(|left| left.values().any(|k| !k.keys().is_empty()))
        {
            return crate::state::one_read_after_the_other(self, event_key, key, document, now)
                .await;
        }
        let items = out
            .responses()
            .and_then(|r| r.get(&self.table))
            .cloned()
            .unwrap_or_default();
        let pk_of = |i: &Item| i.get("pk").and_then(|v| v.as_s().ok()).cloned();
        let found = |pk: &str| items.iter().find(|i| pk_of(i).as_deref() == Some(pk));
        if live_event(found(&event), now) {
            return Ok(FirstRead {
                seen: true,
                ..FirstRead::default()
            });
        }
        let document = match (document, doc) {
            (Some(name), Some(pk)) => Some(found(&pk).map(|i| document_of(name, i)).transpose()?),
            _ => None,
        };
        Ok(FirstRead {
            seen: false,
            user: found(&user).map(state_doc).transpose()?,
            document,
        })
    }

    async fn claimant(&self, scim_id: &str) -> Result<Option<UserKey>, StoreError> {
        Ok(self
            .get(claim_pk(scim_id), "CLAIM")
            .await?
            .and_then(|i| i.get("owner").and_then(|v| v.as_s().ok()).cloned())
            .and_then(|owner| UserKey::from_storage_id(&owner)))
    }

    async fn release_claim(&self, scim_id: &str, key: &UserKey) -> Result<(), StoreError> {
        let owner = key.storage_id();
        match self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(claim_pk(scim_id)))
            .key("sk", s("CLAIM"))
            .condition_expression("#o = :owner")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Not this user's claim (or none): nothing to give up.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(backend(e)),
        }
    }

    async fn load_document(&self, name: &str) -> Result<Option<(String, u64)>, StoreError> {
        self.get(document_pk(name), "DOC")
            .await?
            .map(|item| document_of(name, &item))
            .transpose()
    }

    async fn save_document(
        &self,
        name: &str,
        value: &str,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(document_pk(name)))
            .item("sk", s("DOC"))
            .item("value", s(value))
            .item("version", n(expected.map_or(1, |v| v + 1)));
        put = match expected {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(v) => put
                .condition_expression("#v = :expected")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":expected", n(v)),
        };
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::Conflict)
            }
            Err(e) => Err(backend(e)),
        }
    }

    async fn commit(
        &self,
        key: &UserKey,
        state: Option<&UserState>,
        expected_version: Option<u64>,
        event: &ProcessedEvent,
    ) -> Result<(), StoreError> {
        self.commit_with(key, state, expected_version, event, None)
            .await
    }

    async fn commit_finished(
        &self,
        key: &UserKey,
        state: Option<&UserState>,
        expected_version: Option<u64>,
        event: &ProcessedEvent,
        history: &HistoryRecord,
    ) -> Result<(), StoreError> {
        self.commit_with(key, state, expected_version, event, Some(history))
            .await
    }
}

impl DynamoStateStore {
    /// The commit: the user's record (conditional on its version), the dedupe record and the
    /// account's claim in one transaction, and the history entry with them when the commit
    /// finishes the trigger. Without a record to write, the dedupe record (and history) alone.
    async fn commit_with(
        &self,
        key: &UserKey,
        state: Option<&UserState>,
        expected_version: Option<u64>,
        event: &ProcessedEvent,
        history: Option<&HistoryRecord>,
    ) -> Result<(), StoreError> {
        let event_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(Self::event_item(event)))
            .build()
            .map_err(backend)?;
        let history_puts = match history {
            Some(h) => history_items(key, h.fingerprint.as_deref(), &h.entry, h.expires_at)?
                .into_iter()
                .map(|item| {
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(item))
                        .build()
                        .map_err(backend)
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let Some(state) = state else {
            if history_puts.is_empty() {
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(Self::event_item(event)))
                    .send()
                    .await
                    .map_err(backend)?;
            } else {
                let items = std::iter::once(event_put)
                    .chain(history_puts)
                    .map(|put| TransactWriteItem::builder().put(put).build());
                self.client
                    .transact_write_items()
                    .set_transact_items(Some(items.collect()))
                    .send()
                    .await
                    .map_err(backend)?;
            }
            return Ok(());
        };
        let mut user_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(Self::user_item(key, state)?));
        user_put = match expected_version {
            None => user_put.condition_expression("attribute_not_exists(pk)"),
            Some(v) => user_put
                .condition_expression("#v = :expected")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":expected", n(v)),
        };
        let mut transaction = self
            .client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .put(user_put.build().map_err(backend)?)
                    .build(),
            )
            .transact_items(TransactWriteItem::builder().put(event_put).build());
        // The account is this user's, or no one's yet: never two records on one account.
        if let Some(scim_id) = &state.scim_id {
            let owner = key.storage_id();
            let claim = Put::builder()
                .table_name(&self.table)
                .item("pk", s(claim_pk(scim_id)))
                .item("sk", s("CLAIM"))
                .item("owner", s(owner.clone()))
                .condition_expression("attribute_not_exists(pk) OR #o = :owner")
                .expression_attribute_names("#o", "owner")
                .expression_attribute_values(":owner", s(owner))
                .build()
                .map_err(backend)?;
            transaction =
                transaction.transact_items(TransactWriteItem::builder().put(claim).build());
        }
        // After the claim: a cancellation's reasons are read by position (0 the record, 2 the
        // claim).
        for put in history_puts {
            transaction = transaction.transact_items(TransactWriteItem::builder().put(put).build());
        }
        let result = transaction.send().await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => {
                let service = err.into_service_error();
                if let aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) = &service {
                    let failed = |i: usize| {
                        c.cancellation_reasons()
                            .get(i)
                            .and_then(|r| r.code())
                            .is_some_and(|code| code == "ConditionalCheckFailed")
                    };
                    if failed(0) {
                        return Err(StoreError::Conflict);
                    }
                    if let (true, Some(scim_id)) = (failed(2), &state.scim_id) {
                        let owner = self
                            .claimant(scim_id)
                            .await?
                            .map(|k| k.storage_id())
                            .unwrap_or_default();
                        return Err(StoreError::Claimed {
                            scim_id: scim_id.clone(),
                            owner,
                        });
                    }
                }
                Err(backend(service))
            }
        }
    }
}

/// A user state item read back with its key.
fn keyed_state(item: &HashMap<String, AttributeValue>) -> Result<(UserKey, UserState), StoreError> {
    let pk = item.get("pk").and_then(|v| v.as_s().ok());
    let key = pk
        .and_then(|pk| pk.strip_prefix("USER#"))
        .and_then(UserKey::from_storage_id)
        .ok_or_else(|| StoreError::Backend(format!("unreadable user key {pk:?}")))?;
    Ok((key, state_doc(item)?))
}

fn state_doc(item: &HashMap<String, AttributeValue>) -> Result<UserState, StoreError> {
    let doc = item
        .get("doc")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| StoreError::Backend("state item has no doc".into()))?;
    serde_json::from_str(doc)
        .map_err(|e| StoreError::Backend(format!("state record unreadable: {e}")))
}

#[async_trait]
impl SweepStore for DynamoStateStore {
    async fn invites_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(UserKey, UserState)>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(INVITES_INDEX)
            .key_condition_expression("invite_shard = :shard AND invite_expires_at <= :now")
            .expression_attribute_values(":shard", s(INVITE_SHARD))
            .expression_attribute_values(":now", n(now.timestamp()))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(backend)?;
        out.items().iter().map(keyed_state).collect()
    }

    async fn active_account_count(&self) -> Result<u64, StoreError> {
        let active = ("active = :active", ":active", AttributeValue::Bool(true));
        let mut count = 0;
        self.scan_each("USER#", Some(active), "pk", |_| {
            count += 1;
            Ok(())
        })
        .await?;
        Ok(count)
    }

    async fn held_users(&self) -> Result<Vec<(UserKey, UserState)>, StoreError> {
        let held = ("held = :held", ":held", AttributeValue::Bool(true));
        self.scan_prefix("USER#", Some(held), "pk, doc")
            .await?
            .iter()
            .map(keyed_state)
            .collect()
    }

    async fn known_user_names(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut names = std::collections::HashSet::new();
        self.scan_each("USER#", None, "doc", |item| {
            names.insert(state_doc(item)?.user_name.to_lowercase());
            Ok(())
        })
        .await?;
        Ok(names)
    }

    async fn active_user_ids(
        &self,
        source: crate::envelope::Source,
        tenant: &str,
    ) -> Result<Vec<String>, StoreError> {
        let prefix = format!("USER#{source}#{tenant}#");
        let active = ("active = :active", ":active", AttributeValue::Bool(true));
        let mut ids = Vec::new();
        self.scan_each(&prefix, Some(active), "pk", |item| {
            let pk = item.get("pk").and_then(|v| v.as_s().ok());
            if let Some(id) = pk.and_then(|pk| pk.strip_prefix(&prefix)) {
                ids.push(id.to_string());
            }
            Ok(())
        })
        .await?;
        Ok(ids)
    }

    async fn invitation_counts(&self, now: DateTime<Utc>) -> Result<InvitationCounts, StoreError> {
        // The invites-due index holds pending invitations only; given-up ones need the scan.
        let mut counts = InvitationCounts::default();
        self.scan_each("USER#", None, "doc", |item| {
            if let Some(invite) = &state_doc(item)?.invite {
                counts.count(invite, now);
            }
            Ok(())
        })
        .await?;
        Ok(counts)
    }

    async fn load_cursor(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .get(format!("CURSOR#{name}"), "CURSOR")
            .await?
            .and_then(|i| i.get("value").and_then(|v| v.as_s().ok()).cloned()))
    }

    async fn save_cursor(&self, name: &str, value: &str) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("CURSOR#{name}")))
            .item("sk", s("CURSOR"))
            .item("value", s(value))
            .item("updated_at", n(Utc::now().timestamp()))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }
}
