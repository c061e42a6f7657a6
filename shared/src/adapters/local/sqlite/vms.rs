//! VMs: rows and their codec, claims, seats, moves, the free counter and liveness.

use super::*;

pub(super) const VM_COLUMNS: &str =
    "hostname, status, status_reason, gpu_health, in_use, email, crd_command, \
     pin, assigned_at, instance_id, token_hash, metrics, created_at, updated_at, last_seen_at, \
     seat_hash, command_at, collect_requested_at, collect_answered_at, metering";

pub(super) fn row_to_vm(row: &Row<'_>) -> rusqlite::Result<Vm> {
    let text = |i: usize| -> rusqlite::Result<String> { row.get(i) };
    let bad = |i: usize, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("bad {what} in store").into(),
        )
    };
    let status = VmStatus::parse(&text(1)?).map_err(|_| bad(1, "status"))?;
    let gpu_health = GpuHealth::parse(&text(3)?).map_err(|_| bad(3, "gpu_health"))?;
    let email: Option<String> = row.get(5)?;
    let assignment = match email {
        Some(email) => Some(Assignment {
            email,
            crd_command: row.get::<_, Option<String>>(6)?.unwrap_or_default(),
            pin: row.get::<_, Option<String>>(7)?.unwrap_or_default(),
            assigned_at: row.get::<_, Option<i64>>(8)?.unwrap_or_default(),
            seat_hash: row.get(15)?,
            command_at: row.get::<_, Option<i64>>(16)?.unwrap_or_default(),
        }),
        None => None,
    };
    let metrics: StartupMetrics =
        serde_json::from_str(&text(11)?).map_err(|_| bad(11, "metrics"))?;
    Ok(Vm {
        hostname: text(0)?,
        status,
        status_reason: row.get(2)?,
        gpu_health,
        in_use: row.get::<_, i64>(4)? != 0,
        assignment,
        instance_id: row.get(9)?,
        token_hash: TokenHash::from_stored(text(10)?),
        metrics,
        created_at: row.get(12)?,
        updated_at: row.get(13)?,
        last_seen_at: row.get(14)?,
        collect_requested_at: row.get(17)?,
        collect_answered_at: row.get(18)?,
        metering: row
            .get::<_, Option<String>>(19)?
            .map(|m| serde_json::from_str(&m).map_err(|_| bad(19, "metering")))
            .transpose()?,
    })
}

pub(super) fn get_vm_in(conn: &Connection, hostname: &str) -> Result<Option<Vm>> {
    conn.prepare_cached(&format!("SELECT {VM_COLUMNS} FROM vms WHERE hostname = ?1"))
        .and_then(|mut stmt| stmt.query_row([hostname], row_to_vm).optional())
        .map_err(sql_err("reading a VM"))
}

pub(super) fn insert_vm_in(conn: &Connection, vm: &Vm) -> Result<()> {
    let metrics = metrics_json(&vm.metrics)?;
    let metering = metering_json(vm)?;
    let a = vm.assignment.as_ref();
    let inserted = conn
        .prepare_cached(&format!(
            "INSERT INTO vms ({VM_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20)
             ON CONFLICT(hostname) DO NOTHING"
        ))
        .and_then(|mut stmt| {
            stmt.execute(params![
                vm.hostname,
                vm.status.as_str(),
                vm.status_reason,
                vm.gpu_health.as_str(),
                vm.in_use as i64,
                a.map(|a| &a.email),
                a.map(|a| &a.crd_command),
                a.map(|a| &a.pin),
                a.map(|a| a.assigned_at),
                vm.instance_id,
                vm.token_hash.as_str(),
                metrics,
                vm.created_at,
                vm.updated_at,
                vm.last_seen_at,
                a.and_then(|a| a.seat_hash.as_ref()),
                a.map(|a| a.command_at),
                vm.collect_requested_at,
                vm.collect_answered_at,
                metering,
            ])
        })
        .map_err(sql_err("inserting a VM"))?;
    if inserted == 0 {
        return Err(Error::Conflict(format!(
            "VM {} already exists",
            vm.hostname
        )));
    }
    Ok(())
}

pub(super) fn metrics_json(m: &StartupMetrics) -> Result<String> {
    serde_json::to_string(m).map_err(|e| Error::Internal(e.into()))
}

fn metering_json(vm: &Vm) -> Result<Option<String>> {
    vm.metering
        .as_ref()
        .map(|m| serde_json::to_string(m).map_err(|e| Error::Internal(e.into())))
        .transpose()
}

#[async_trait]
impl VmStore for SqliteStore {
    async fn insert_vm(&self, vm: &Vm) -> Result<()> {
        let vm = vm.clone();
        self.write(move |conn| insert_vm_in(conn, &vm)).await
    }

    async fn get_vm(&self, hostname: &str) -> Result<Option<Vm>> {
        let hostname = hostname.to_string();
        self.read(move |conn| get_vm_in(conn, &hostname)).await
    }

    async fn list_vms(&self) -> Result<Vec<Vm>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {VM_COLUMNS} FROM vms ORDER BY created_at, hostname"
                ))
                .map_err(sql_err("listing VMs"))?;
            let vms = stmt
                .query_map([], row_to_vm)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(sql_err("listing VMs"))?;
            Ok(vms)
        })
        .await
    }

    async fn update_vm(&self, hostname: &str, change: &VmChange, now: Millis) -> Result<Vm> {
        let hostname = hostname.to_string();
        let change = change.clone();
        self.write(move |conn| {
            let mut vm = get_vm_in(conn, &hostname)?
                .ok_or_else(|| Error::NotFound(format!("VM {hostname}")))?;
            change.apply(&mut vm, now)?;
            let metrics = metrics_json(&vm.metrics)?;
            let metering = metering_json(&vm)?;
            conn.prepare_cached(
                "UPDATE vms SET status = ?2, status_reason = ?3, gpu_health = ?4, in_use = ?5,
                        instance_id = ?6, metrics = ?7, updated_at = ?8, last_seen_at = ?9,
                        crd_command = ?10, command_at = ?11, collect_requested_at = ?12,
                        collect_answered_at = ?13, metering = ?14
                 WHERE hostname = ?1",
            )
            .and_then(|mut stmt| {
                let a = vm.assignment.as_ref();
                stmt.execute(params![
                    vm.hostname,
                    vm.status.as_str(),
                    vm.status_reason,
                    vm.gpu_health.as_str(),
                    vm.in_use as i64,
                    vm.instance_id,
                    metrics,
                    vm.updated_at,
                    vm.last_seen_at,
                    a.map(|a| &a.crd_command),
                    a.map(|a| a.command_at),
                    vm.collect_requested_at,
                    vm.collect_answered_at,
                    metering,
                ])
            })
            .map_err(sql_err("updating a VM"))?;
            Ok(vm)
        })
        .await
    }

    async fn claim_vm(&self, request: &ClaimRequest) -> Result<ClaimOutcome> {
        let request = request.clone();
        self.write(move |conn| {
            // Runs in the writer's BEGIN IMMEDIATE transaction: the check and the assignment
            // below are one atomic step, even if another process opened the same database.
            let existing = conn
                .prepare_cached(&format!("SELECT {VM_COLUMNS} FROM vms WHERE email = ?1"))
                .and_then(|mut stmt| {
                    stmt.query_row([request.email.as_str()], row_to_vm)
                        .optional()
                })
                .map_err(sql_err("looking up an email's VM"))?;
            if let Some(vm) = existing {
                return Ok(ClaimOutcome::AlreadyAssigned(vm));
            }
            let claimed = assign_free_vm(
                conn,
                None,
                &Assignment {
                    email: request.email.as_str().to_string(),
                    crd_command: request.crd_command.clone(),
                    pin: request.pin.as_str().to_string(),
                    assigned_at: request.now,
                    seat_hash: Some(request.seat_hash.clone()),
                    command_at: request.now,
                },
                request.live_since,
            )?;
            Ok(match claimed {
                Some(vm) => ClaimOutcome::Assigned(vm),
                None => ClaimOutcome::NoneFree,
            })
        })
        .await
    }

    async fn count_assignable(&self, live_since: Millis) -> Result<u64> {
        self.read(move |conn| {
            // The counter holds every free candidate; those not heard from since
            // `live_since` are few (the sweep marks them), so subtracting them is cheap.
            let candidates: i64 = conn
                .prepare_cached("SELECT value FROM counters WHERE name = 'assignable'")
                .and_then(|mut stmt| stmt.query_row([], |r| r.get(0)))
                .map_err(sql_err("counting free VMs"))?;
            // Two range scans of the partial index (an OR of the two would scan all of it).
            let quiet: i64 = conn
                .prepare_cached(&format!(
                    "SELECT (SELECT COUNT(*) FROM vms INDEXED BY vms_free_by_last_seen
                             WHERE {pred} AND last_seen_at < ?1)
                          + (SELECT COUNT(*) FROM vms INDEXED BY vms_free_by_last_seen
                             WHERE {pred} AND last_seen_at IS NULL)",
                    pred = assignable_predicate()
                ))
                .and_then(|mut stmt| stmt.query_row([live_since], |r| r.get(0)))
                .map_err(sql_err("counting quiet VMs"))?;
            Ok((candidates - quiet).max(0) as u64)
        })
        .await
    }

    async fn vm_by_seat(&self, seat_hash: &str) -> Result<Option<Vm>> {
        let seat_hash = seat_hash.to_string();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {VM_COLUMNS} FROM vms WHERE seat_hash = ?1"
            ))
            .and_then(|mut stmt| stmt.query_row([seat_hash], row_to_vm).optional())
            .map_err(sql_err("looking up a seat"))
        })
        .await
    }

    async fn reissue_seat(&self, hostname: &str, seat_hash: &str, now: Millis) -> Result<Vm> {
        let hostname = hostname.to_string();
        let seat_hash = seat_hash.to_string();
        self.write(move |conn| {
            let vm = get_vm_in(conn, &hostname)?;
            if !vm
                .as_ref()
                .and_then(|v| v.assignment.as_ref())
                .is_some_and(Assignment::is_participant)
            {
                return Err(Error::NotFound(format!("a participant on VM {hostname}")));
            }
            conn.prepare_cached(&format!(
                "UPDATE vms SET seat_hash = ?2, updated_at = ?3 WHERE hostname = ?1
                 RETURNING {VM_COLUMNS}"
            ))
            .and_then(|mut stmt| stmt.query_row(params![hostname, seat_hash, now], row_to_vm))
            .map_err(sql_err("re-issuing a seat"))
        })
        .await
    }

    async fn move_seat(&self, request: &MoveSeat) -> Result<MoveOutcome> {
        let request = request.clone();
        self.write(move |conn| {
            let from = get_vm_in(conn, &request.from)?;
            let held = request.held(from.as_ref()).cloned();
            let Some(held) = held else {
                return Err(Error::NotFound(format!(
                    "a participant on VM {}",
                    request.from
                )));
            };
            // Retire the old VM first, which frees the email and seat (UNIQUE); rolled back
            // with the savepoint if no VM is free.
            let retired = Assignment::retired(&request.from, request.now);
            conn.prepare_cached(
                "UPDATE vms SET email = ?5, crd_command = '', pin = '', assigned_at = ?4,
                        seat_hash = NULL, command_at = ?4, status = ?2, status_reason = ?3,
                        updated_at = ?4
                 WHERE hostname = ?1",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    request.from,
                    VmStatus::Error.as_str(),
                    request.reason,
                    request.now,
                    retired.email,
                ])
            })
            .map_err(sql_err("retiring a VM"))?;
            let moved = assign_free_vm(
                conn,
                request.to.as_deref(),
                &Assignment {
                    pin: request.pin.as_str().to_string(),
                    assigned_at: request.now,
                    command_at: request.now,
                    ..held
                },
                request.live_since,
            )?;
            match moved {
                Some(vm) => Ok(MoveOutcome::Moved(Box::new(vm))),
                // Undo the release: an error makes the writer roll this job back.
                None => Err(Error::Conflict(NO_VM_TO_MOVE_TO.into())),
            }
        })
        .await
        .or_else(|e| match e {
            Error::Conflict(m) if m == NO_VM_TO_MOVE_TO => Ok(MoveOutcome::NoneFree),
            e => Err(e),
        })
    }

    async fn delete_vm(&self, hostname: &str, now: Millis) -> Result<()> {
        let hostname = hostname.to_string();
        self.write(move |conn| {
            // Its spend goes to the ledger in the same transaction that ends the record.
            if let Some(record) =
                get_vm_in(conn, &hostname)?.and_then(|vm| vm.spend_record(Some(now)))
            {
                super::spend::record_ended_tx(conn, &record)?;
            }
            conn.prepare_cached("DELETE FROM vms WHERE hostname = ?1")
                .and_then(|mut stmt| stmt.execute([hostname]))
                .map_err(sql_err("deleting a VM"))?;
            Ok(())
        })
        .await
    }
}

pub(super) const NO_VM_TO_MOVE_TO: &str = "no assignable VM to move to";

/// Gives `assignment` to one assignable VM (the named one, or the oldest), returning it;
/// `None` if there is none. Call inside a write transaction.
pub(super) fn assign_free_vm(
    conn: &Connection,
    only: Option<&str>,
    a: &Assignment,
    live_since: Millis,
) -> Result<Option<Vm>> {
    // INDEXED BY: left alone, SQLite's planner prefers the `email` UNIQUE index for
    // `email IS NULL`, which matches every free VM, and sorts them all on each claim
    // (measured: 600 claims/s with 20,000 VMs, against 13,000 with the hint).
    conn.prepare_cached(&format!(
        "UPDATE vms SET email = ?1, crd_command = ?2, pin = ?3, assigned_at = ?4, updated_at = ?4,
                seat_hash = ?5, command_at = ?6
         WHERE hostname = (SELECT hostname FROM vms INDEXED BY vms_assignable
                           WHERE {} AND last_seen_at >= ?7 AND (?8 IS NULL OR hostname = ?8)
                           ORDER BY created_at, hostname LIMIT 1)
         RETURNING {VM_COLUMNS}",
        assignable_predicate()
    ))
    .and_then(|mut stmt| {
        stmt.query_row(
            params![
                a.email,
                a.crd_command,
                a.pin,
                a.assigned_at,
                a.seat_hash,
                a.command_at,
                live_since,
                only
            ],
            row_to_vm,
        )
        .optional()
    })
    .map_err(sql_err("assigning a VM"))
}
