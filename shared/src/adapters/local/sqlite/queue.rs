//! Local mode's durable job queue: jobs are rows committed with the VMs they launch.

use super::*;

pub(super) fn insert_jobs_in(
    conn: &Connection,
    jobs: &[QueueJob],
    not_before: Millis,
) -> Result<()> {
    let mut stmt = conn
        .prepare_cached("INSERT INTO jobs (body, not_before) VALUES (?1, ?2)")
        .map_err(sql_err("queueing a job"))?;
    for job in jobs {
        stmt.execute(params![job.to_message(), not_before])
            .map_err(sql_err("queueing a job"))?;
    }
    Ok(())
}

/// A job of the durable queue (see [`SqliteStore::due_jobs`]).
#[derive(Debug, Clone)]
pub struct QueuedJob {
    pub id: i64,
    pub job: QueueJob,
    /// Deliveries so far (this one not counted).
    pub attempts: u32,
}

/// Local mode's durable job queue: jobs are rows of the store itself, so the VMs of a launch
/// and their launch jobs commit in one transaction, and jobs a crashed process left are
/// picked up by the next one. (See `adapters::local::durable_queue` for the worker.)
impl SqliteStore {
    /// Records `vms` and queues `jobs` in one transaction: both or neither.
    pub async fn insert_vms_and_jobs(&self, vms: &[Vm], jobs: &[QueueJob]) -> Result<()> {
        let (vms, jobs) = (vms.to_vec(), jobs.to_vec());
        self.write(move |conn| {
            for vm in &vms {
                insert_vm_in(conn, vm)?;
            }
            insert_jobs_in(conn, &jobs, 0)
        })
        .await
    }

    pub async fn enqueue_jobs(&self, jobs: &[QueueJob]) -> Result<()> {
        let jobs = jobs.to_vec();
        self.write(move |conn| insert_jobs_in(conn, &jobs, 0)).await
    }

    /// Jobs due at `now`, oldest first. A row that is not a job message (a poison message)
    /// is dropped with an error in the log.
    pub async fn due_jobs(&self, now: Millis) -> Result<Vec<QueuedJob>> {
        let rows: Vec<(i64, String, i64)> = self
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT id, body, attempts FROM jobs WHERE not_before <= ?1 ORDER BY id LIMIT 1000",
                )
                .and_then(|mut stmt| {
                    stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(sql_err("reading due jobs"))
            })
            .await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for (id, body, attempts) in rows {
            match QueueJob::from_message(&body) {
                Ok(job) => jobs.push(QueuedJob {
                    id,
                    job,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                }),
                Err(e) => {
                    tracing::error!(id, error = %e, "dropping a job that cannot be read");
                    self.finish_job(id).await?;
                }
            }
        }
        Ok(jobs)
    }

    /// Removes a job that is done (or abandoned).
    pub async fn finish_job(&self, id: i64) -> Result<()> {
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM jobs WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute([id]))
                .map_err(sql_err("finishing a job"))?;
            Ok(())
        })
        .await
    }

    /// Records a delivery and when the job may run again.
    pub async fn retry_job(&self, id: i64, attempts: u32, not_before: Millis) -> Result<()> {
        self.write(move |conn| {
            conn.prepare_cached("UPDATE jobs SET attempts = ?2, not_before = ?3 WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute(params![id, attempts, not_before]))
                .map_err(sql_err("delaying a job"))?;
            Ok(())
        })
        .await
    }

    /// Operations still marked running (after a crash: the ones it interrupted).
    pub async fn running_operations(&self) -> Result<Vec<Operation>> {
        let bodies: Vec<String> = self
            .read(|conn| {
                conn.prepare_cached("SELECT body FROM operations WHERE status = 'running'")
                    .and_then(|mut stmt| {
                        stmt.query_map([], |r| r.get(0))?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(sql_err("reading running operations"))
            })
            .await?;
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).map_err(|e| Error::Internal(e.into())))
            .collect()
    }
}
