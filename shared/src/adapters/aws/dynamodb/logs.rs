//! VM logs: chunk items of whole lines under the VM's log partition, a meta item with the byte total and next sequence number, trimmed to the cap.

use super::*;
use crate::domain::logs::{body_lines, chunk_body, trim_oldest, Trim};

impl DynamoStore {
    /// Oldest chunk of a VM's log: (seq, body).
    async fn oldest_chunk(&self, hostname: &str) -> Result<Option<(i64, String)>> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :chunk)")
            .expression_attribute_values(":pk", s(logs_pk(hostname)))
            .expression_attribute_values(":chunk", s("CHUNK#"))
            .consistent_read(true)
            .limit(1)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| internal("Query log chunks", DisplayErrorContext(e)))?;
        self.stats
            .record("Query", capacity_of(out.consumed_capacity()));
        Ok(out
            .items()
            .first()
            .and_then(|i| Some((get_n(i, "seq")?, get_s(i, "body")?))))
    }

    /// Every chunk after `after`, in order.
    async fn chunks_after(&self, hostname: &str, after: i64) -> Result<Vec<Item>> {
        self.query_all("Query log chunks", |start| {
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":pk", s(logs_pk(hostname)))
                .expression_attribute_values(":from", s(chunk_sk(after + 1)))
                .expression_attribute_values(":to", s(chunk_sk(i64::MAX)))
                .consistent_read(true)
                .set_exclusive_start_key(start)
        })
        .await
    }

    /// Changes the byte total; `first_seq` moves the oldest live chunk on (a chunk trimmed
    /// away whole).
    fn meta_update(
        &self,
        hostname: &str,
        delta_bytes: i64,
        first_seq: Option<i64>,
    ) -> Result<TransactWriteItem> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(logs_pk(hostname), "META")))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":d", n(delta_bytes));
        update = match first_seq {
            Some(seq) => update
                .update_expression("ADD bytes :d SET first_seq = :f")
                .expression_attribute_values(":f", n(seq)),
            None => update.update_expression("ADD bytes :d"),
        };
        Ok(TransactWriteItem::builder()
            .update(
                update
                    .build()
                    .map_err(|e| internal("building a log total update", e))?,
            )
            .build())
    }

    /// Chunks expire by TTL (30 days after they were written) without passing through the
    /// trim, and their bytes would go on counting in the total: fresh lines would then be
    /// trimmed too early. When the oldest chunk is not the one the total starts at, the
    /// total is recounted from the chunks that exist (rare: once per expiry). Conditional
    /// on the total being as read, so a concurrent append or trim just makes it look again.
    async fn recount_logs(&self, hostname: &str, bytes: i64, next_seq: i64) -> Result<()> {
        let chunks = self.chunks_after(hostname, 0).await?;
        let total: i64 = chunks.iter().filter_map(|c| get_n::<i64>(c, "bytes")).sum();
        let first = chunks
            .iter()
            .filter_map(|c| get_n::<i64>(c, "seq"))
            .min()
            .unwrap_or(next_seq);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(logs_pk(hostname), "META")))
            .update_expression("SET bytes = :total, first_seq = :first")
            .condition_expression("bytes = :bytes AND next_seq = :next")
            .expression_attribute_values(":total", n(total))
            .expression_attribute_values(":first", n(first))
            .expression_attribute_values(":bytes", n(bytes))
            .expression_attribute_values(":next", n(next_seq))
            .send()
            .await;
        self.stats.record("UpdateItem", 0.0);
        match result {
            Ok(_) => {
                tracing::info!(
                    hostname,
                    counted = bytes,
                    found = total,
                    "log total recounted after expired chunks"
                );
                Ok(())
            }
            Err(e) if code(&e).as_deref() == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(internal("recounting logs", DisplayErrorContext(e))),
        }
    }
}

#[async_trait]
impl LogStore for DynamoStore {
    async fn append_logs(
        &self,
        hostname: &str,
        lines: &[String],
        cap_bytes: usize,
        now: Millis,
    ) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let chunks = chunk_lines(lines);
        let cap = i64::try_from(cap_bytes).unwrap_or(i64::MAX);
        // 1. Append: the meta item moves (conditionally) from next_seq to next_seq + k in the
        //    same transaction that writes the k chunks, so concurrent appends never collide.
        let mut attempts = 0;
        loop {
            attempts += 1;
            if attempts > MAX_ATTEMPTS {
                return Err(internal("appending logs", "too much contention"));
            }
            let meta = self.get(&logs_pk(hostname), "META", true).await?;
            let (bytes, next_seq): (i64, i64) = meta
                .as_ref()
                .map(|m| {
                    (
                        get_n(m, "bytes").unwrap_or(0),
                        get_n(m, "next_seq").unwrap_or(1),
                    )
                })
                .unwrap_or((0, 1));
            // Where the live chunks start: kept as is (unknown on records from before it
            // was tracked: the trim recounts those).
            let first_seq: Option<i64> = match &meta {
                None => Some(next_seq),
                Some(m) => get_n(m, "first_seq"),
            };
            let mut items = Vec::new();
            let mut added = 0i64;
            for (i, chunk) in chunks.iter().enumerate() {
                let body = chunk_body(chunk);
                added += body.len() as i64;
                let seq = next_seq + i as i64;
                let mut item = key(logs_pk(hostname), chunk_sk(seq));
                item.insert("seq".into(), n(seq));
                item.insert("bytes".into(), n(body.len()));
                item.insert("body".into(), s(body));
                item.insert(table::TTL_ATTRIBUTE.into(), ttl_from(now));
                items.push(self.put_item(item, "attribute_not_exists(pk)", vec![])?);
            }
            let mut meta_item = key(logs_pk(hostname), "META");
            meta_item.insert("bytes".into(), n(bytes + added));
            meta_item.insert("next_seq".into(), n(next_seq + chunks.len() as i64));
            if let Some(first) = first_seq {
                meta_item.insert("first_seq".into(), n(first));
            }
            meta_item.insert(table::TTL_ATTRIBUTE.into(), ttl_from(now));
            let meta_put = match meta {
                None => self.put_item(meta_item, "attribute_not_exists(pk)", vec![])?,
                Some(_) => self.put_item(
                    meta_item,
                    "next_seq = :seq AND bytes = :bytes",
                    vec![(":seq", n(next_seq)), (":bytes", n(bytes))],
                )?,
            };
            items.insert(0, meta_put);
            if self.transact(items).await?.is_none() {
                break;
            }
        }
        // 2. Trim the oldest lines until at most `cap` bytes remain. Each step is one
        //    transaction conditional on the chunk being as read, so concurrent trimmers never
        //    remove the same bytes twice.
        for _ in 0..10_000 {
            let Some(meta) = self.get(&logs_pk(hostname), "META", true).await? else {
                return Ok(());
            };
            let total: i64 = get_n(&meta, "bytes").unwrap_or(0);
            if total <= cap {
                return Ok(());
            }
            let next_seq: i64 = get_n(&meta, "next_seq").unwrap_or(1);
            let first_seq: Option<i64> = get_n(&meta, "first_seq");
            let oldest = self.oldest_chunk(hostname).await?;
            let Some((seq, body)) = oldest.filter(|(seq, _)| first_seq == Some(*seq)) else {
                // Chunks the total counts have expired (or the start is unknown).
                self.recount_logs(hostname, total, next_seq).await?;
                continue;
            };
            let Some(step) = trim_oldest(total, cap, &body) else {
                return Ok(());
            };
            let size = body.len() as i64;
            let chunk_key = key(logs_pk(hostname), chunk_sk(seq));
            let (chunk_write, first_seq) = match &step {
                Trim::Drop { .. } => (
                    self.delete_item(chunk_key, Some(("bytes = :b", vec![(":b", n(size))])))?,
                    Some(seq + 1),
                ),
                Trim::KeepTail { tail, .. } => {
                    let update = Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(chunk_key))
                        .update_expression("SET body = :body, bytes = :new")
                        .condition_expression("bytes = :b")
                        .expression_attribute_values(":body", s(*tail))
                        .expression_attribute_values(":new", n(tail.len()))
                        .expression_attribute_values(":b", n(size))
                        .build()
                        .map_err(|e| internal("building a log trim", e))?;
                    (TransactWriteItem::builder().update(update).build(), None)
                }
            };
            // A cancelled step means another writer trimmed first: look again.
            self.transact(vec![
                chunk_write,
                self.meta_update(hostname, -step.removed(), first_seq)?,
            ])
            .await?;
        }
        Err(internal("trimming logs", "did not converge"))
    }
    async fn read_logs(&self, hostname: &str, after: u64) -> Result<Option<LogPage>> {
        let Some(meta) = self.get(&logs_pk(hostname), "META", true).await? else {
            return Ok(None);
        };
        let next_seq: i64 = get_n(&meta, "next_seq").unwrap_or(1);
        let after = i64::try_from(after).unwrap_or(i64::MAX - 1);
        let bodies: Vec<String> = self
            .chunks_after(hostname, after)
            .await?
            .iter()
            .filter_map(|i| get_s(i, "body"))
            .collect();
        let lines = body_lines(&bodies);
        Ok(Some(LogPage {
            lines,
            cursor: (next_seq - 1).max(0) as u64,
        }))
    }

    async fn delete_logs(&self, hostname: &str) -> Result<()> {
        let mut keys: Vec<Item> = self
            .chunks_after(hostname, 0)
            .await?
            .iter()
            .filter_map(|i| Some(key(get_s(i, "pk")?, get_s(i, "sk")?)))
            .collect();
        keys.push(key(logs_pk(hostname), "META"));
        // BatchWriteItem takes at most 25 requests; unprocessed ones are sent again.
        for batch in keys.chunks(25) {
            let mut requests: Vec<WriteRequest> = batch
                .iter()
                .map(|k| {
                    DeleteRequest::builder()
                        .set_key(Some(k.clone()))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(|e| internal("building a delete", e))
                })
                .collect::<Result<_>>()?;
            for _ in 0..MAX_ATTEMPTS {
                if requests.is_empty() {
                    break;
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(|e| internal("BatchWriteItem", DisplayErrorContext(e)))?;
                self.stats.record("BatchWriteItem", 0.0);
                requests = out
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.table).cloned())
                    .unwrap_or_default();
                if !requests.is_empty() {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
        Ok(())
    }
}
