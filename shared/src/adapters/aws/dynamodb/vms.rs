//! VMs: claims through the sparse `free` index, seats, moves, the free counter and liveness.

use super::*;

impl DynamoStore {
    /// The VM an email holds, if any.
    pub(super) async fn vm_of_email(&self, email: &str) -> Result<Option<Vm>> {
        let Some(item) = self.get(&email_pk(email), "EMAIL", true).await? else {
            return Ok(None);
        };
        let hostname = get_s(&item, "hostname")
            .ok_or_else(|| internal("reading an email item", "no hostname"))?;
        self.get_vm(&hostname).await
    }

    /// One transaction: the email gets its item (only if it has none) and the seat its item,
    /// the VM its assignment (only if still assignable and live), the free counter one less.
    pub(super) async fn try_claim(
        &self,
        vm: &Vm,
        a: &Assignment,
        live_since: Millis,
    ) -> Result<TryClaim> {
        let mut email_item = key(email_pk(&a.email), "EMAIL");
        email_item.insert("hostname".into(), s(&vm.hostname));
        let mut items = vec![self.put_item(email_item, "attribute_not_exists(pk)", vec![])?];
        items.extend(self.assign_items(vm, a, live_since)?);
        Ok(match self.transact(items).await? {
            None => TryClaim::Won,
            Some(codes) if codes.first().map(String::as_str) == Some("ConditionalCheckFailed") => {
                TryClaim::EmailHasAVm
            }
            Some(_) => TryClaim::Lost,
        })
    }

    /// The writes that give `a` to the free VM `vm`: its assignment (conditional on it
    /// still being assignable and live), the seat item, the free counter one less.
    pub(super) fn assign_items(
        &self,
        vm: &Vm,
        a: &Assignment,
        live_since: Millis,
    ) -> Result<Vec<TransactWriteItem>> {
        let mut update = String::from(
            "SET email = :email, crd_command = :crd, pin = :pin, assigned_at = :now, \
             command_at = :now, updated_at = :now, version = version + :one",
        );
        if a.seat_hash.is_some() {
            update.push_str(", seat_hash = :seat");
        }
        update.push_str(" REMOVE free_pk, free_sk");
        let mut claim = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(vm_pk(&vm.hostname), "VM")))
            .update_expression(update)
            .condition_expression(format!(
                "{} AND last_seen_at >= :live_since",
                assignable_condition()
            ))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":email", s(&a.email))
            .expression_attribute_values(":crd", s(&a.crd_command))
            .expression_attribute_values(":pin", s(&a.pin))
            .expression_attribute_values(":now", n(a.assigned_at))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":live_since", n(live_since))
            .expression_attribute_values(":assignable_status", s(AssignableRule::STATUS.as_str()))
            .expression_attribute_values(
                ":excluded_health",
                s(AssignableRule::EXCLUDED_HEALTH.as_str()),
            );
        let mut items = Vec::with_capacity(3);
        if let Some(h) = &a.seat_hash {
            claim = claim.expression_attribute_values(":seat", s(h));
            let mut seat_item = key(seat_pk(h), "SEAT");
            seat_item.insert("hostname".into(), s(&vm.hostname));
            items.push(self.put_unconditional(seat_item)?);
        }
        let claim = claim.build().map_err(|e| internal("building a claim", e))?;
        items.insert(0, TransactWriteItem::builder().update(claim).build());
        items.push(counter_update(&self.table, -1)?);
        Ok(items)
    }

    pub(super) fn put_unconditional(&self, item: Item) -> Result<TransactWriteItem> {
        Ok(TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .build()
                    .map_err(|e| internal("building a put", e))?,
            )
            .build())
    }

    /// A page of assignable, live VMs (most recently heard from first), shuffled so that
    /// concurrent claimers spread over it instead of all fighting for the same VM.
    pub(super) async fn free_candidates(&self, live_since: Millis) -> Result<Vec<Vm>> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(table::FREE_INDEX)
            .key_condition_expression("#p = :free AND #s >= :since")
            .expression_attribute_names("#p", table::FREE_PK)
            .expression_attribute_names("#s", table::FREE_SK)
            .expression_attribute_values(":free", s("FREE"))
            .expression_attribute_values(":since", s(free_sk_bound(live_since)))
            .scan_index_forward(false)
            .limit(CLAIM_PAGE)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| internal("Query free", DisplayErrorContext(e)))?;
        self.stats
            .record("Query", capacity_of(out.consumed_capacity()));
        let mut candidates = out
            .items()
            .iter()
            .map(|i| item_to_vm(i).map(|(vm, _)| vm))
            .collect::<Result<Vec<_>>>()?;
        candidates.shuffle(&mut rand::rng());
        Ok(candidates)
    }
}

/// The DynamoDB condition for "this VM is assignable", from the same rule as everything.
pub(super) fn assignable_condition() -> &'static str {
    "#status = :assignable_status AND attribute_not_exists(email) AND gpu_health <> :excluded_health"
}

#[async_trait]
impl VmStore for DynamoStore {
    async fn insert_vm(&self, vm: &Vm) -> Result<()> {
        for attempt in 0..5u32 {
            match self.write_vm(vm, None).await? {
                VmWrite::Written => return Ok(()),
                VmWrite::ConditionFailed => {
                    return Err(Error::Conflict(format!(
                        "VM {} already exists",
                        vm.hostname
                    )))
                }
                // Throttled: not "already exists"; back off and try again.
                VmWrite::Transient => {
                    tokio::time::sleep(std::time::Duration::from_millis(20u64 << attempt)).await;
                }
            }
        }
        Err(Error::Unavailable(format!(
            "the store is busy; VM {} was not recorded, try again",
            vm.hostname
        )))
    }

    async fn get_vm(&self, hostname: &str) -> Result<Option<Vm>> {
        Ok(self
            .get_vm_versioned(hostname, true)
            .await?
            .map(|(vm, _)| vm))
    }

    async fn list_vms(&self) -> Result<Vec<Vm>> {
        let items = self
            .query_all("Query vms", |start| {
                self.client
                    .query()
                    .table_name(&self.table)
                    .index_name(table::VMS_INDEX)
                    .key_condition_expression("#p = :vm")
                    .expression_attribute_names("#p", table::VMS_PK)
                    .expression_attribute_values(":vm", s("VM"))
                    .set_exclusive_start_key(start)
            })
            .await?;
        items
            .iter()
            .map(|i| item_to_vm(i).map(|(vm, _)| vm))
            .collect()
    }

    async fn update_vm(&self, hostname: &str, change: &VmChange, now: Millis) -> Result<Vm> {
        for _ in 0..MAX_ATTEMPTS {
            let (mut vm, version) = self
                .get_vm_versioned(hostname, true)
                .await?
                .ok_or_else(|| Error::NotFound(format!("VM {hostname}")))?;
            let was_assignable = vm.is_free_candidate();
            change.apply(&mut vm, now)?;
            if self.write_vm(&vm, Some((version, was_assignable))).await? == VmWrite::Written {
                return Ok(vm);
            }
        }
        Err(internal("updating a VM", "too much contention"))
    }

    async fn claim_vm(&self, request: &ClaimRequest) -> Result<ClaimOutcome> {
        let email = request.email.as_str();
        let assignment = Assignment {
            email: email.to_string(),
            crd_command: request.crd_command.clone(),
            pin: request.pin.as_str().to_string(),
            assigned_at: request.now,
            seat_hash: Some(request.seat_hash.clone()),
            command_at: request.now,
        };
        for _ in 0..MAX_ATTEMPTS {
            let candidates = self.free_candidates(request.live_since).await?;
            if candidates.is_empty() {
                // Nothing free; a returning participant still gets their VM.
                return Ok(match self.vm_of_email(email).await? {
                    Some(vm) => ClaimOutcome::AlreadyAssigned(vm),
                    None => ClaimOutcome::NoneFree,
                });
            }
            // A few tries per page, then a fresh page (the one we hold is going stale while
            // others claim).
            for vm in candidates.into_iter().take(TRIES_PER_PAGE) {
                match self.try_claim(&vm, &assignment, request.live_since).await? {
                    TryClaim::Won => {
                        let mut vm = vm;
                        vm.assignment = Some(assignment);
                        vm.updated_at = request.now;
                        return Ok(ClaimOutcome::Assigned(vm));
                    }
                    TryClaim::EmailHasAVm => {
                        // The same person claimed before (or in a parallel request).
                        if let Some(vm) = self.vm_of_email(email).await? {
                            return Ok(ClaimOutcome::AlreadyAssigned(vm));
                        }
                    }
                    TryClaim::Lost => {}
                }
            }
        }
        Err(internal("claiming a VM", "too much contention"))
    }

    async fn count_assignable(&self, live_since: Millis) -> Result<u64> {
        let item = self.get(COUNTER_PK, COUNTER_FREE_SK, true).await?;
        let candidates = item.and_then(|i| get_n::<i64>(&i, "value")).unwrap_or(0);
        // Candidates that went quiet: the old end of the free index.
        let mut quiet = 0i64;
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(table::FREE_INDEX)
                .key_condition_expression("#p = :free AND #s < :since")
                .expression_attribute_names("#p", table::FREE_PK)
                .expression_attribute_names("#s", table::FREE_SK)
                .expression_attribute_values(":free", s("FREE"))
                .expression_attribute_values(":since", s(free_sk_bound(live_since)))
                .select(aws_sdk_dynamodb::types::Select::Count)
                .set_exclusive_start_key(start)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|e| internal("Query quiet", DisplayErrorContext(e)))?;
            self.stats
                .record("Query", capacity_of(out.consumed_capacity()));
            quiet += i64::from(out.count());
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
        Ok((candidates - quiet).max(0) as u64)
    }

    async fn vm_by_seat(&self, seat_hash: &str) -> Result<Option<Vm>> {
        let Some(item) = self.get(&seat_pk(seat_hash), "SEAT", true).await? else {
            return Ok(None);
        };
        let hostname = get_s(&item, "hostname")
            .ok_or_else(|| internal("reading a seat item", "no hostname"))?;
        Ok(self.get_vm(&hostname).await?.filter(|vm| {
            vm.assignment
                .as_ref()
                .is_some_and(|a| a.seat_hash.as_deref() == Some(seat_hash))
        }))
    }

    async fn reissue_seat(&self, hostname: &str, seat_hash: &str, now: Millis) -> Result<Vm> {
        for _ in 0..MAX_ATTEMPTS {
            let (mut vm, version) = self
                .get_vm_versioned(hostname, true)
                .await?
                .filter(|(v, _)| {
                    v.assignment
                        .as_ref()
                        .is_some_and(Assignment::is_participant)
                })
                .ok_or_else(|| Error::NotFound(format!("a participant on VM {hostname}")))?;
            let mut items = Vec::with_capacity(3);
            if let Some(a) = vm.assignment.as_mut() {
                if let Some(old) = a.seat_hash.replace(seat_hash.to_string()) {
                    items.push(self.delete_item(key(seat_pk(&old), "SEAT"), None)?);
                }
            }
            vm.updated_at = now;
            let mut seat_item = key(seat_pk(seat_hash), "SEAT");
            seat_item.insert("hostname".into(), s(hostname));
            items.push(self.put_unconditional(seat_item)?);
            items.push(self.put_item(
                vm_to_item(&vm, version + 1)?,
                "version = :v",
                vec![(":v", n(version))],
            )?);
            if self.transact(items).await?.is_none() {
                return Ok(vm);
            }
        }
        Err(internal("re-issuing a seat", "too much contention"))
    }

    async fn move_seat(&self, request: &MoveSeat) -> Result<MoveOutcome> {
        let not_held = || Error::NotFound(format!("a participant on VM {}", request.from));
        for _ in 0..MAX_ATTEMPTS {
            let (from, version) = self
                .get_vm_versioned(&request.from, true)
                .await?
                .ok_or_else(not_held)?;
            let held = request.held(Some(&from)).cloned().ok_or_else(not_held)?;
            let candidates = match &request.to {
                Some(to) => self
                    .get_vm(to)
                    .await?
                    .filter(|v| v.is_assignable(request.live_since))
                    .into_iter()
                    .collect(),
                None => self.free_candidates(request.live_since).await?,
            };
            if candidates.is_empty() {
                return Ok(MoveOutcome::NoneFree);
            }
            let mut released = from.clone();
            released.assignment = Some(Assignment::retired(&from.hostname, request.now));
            released.status = VmStatus::Error;
            released.status_reason = Some(request.reason.clone());
            released.updated_at = request.now;
            let moved = Assignment {
                pin: request.pin.as_str().to_string(),
                assigned_at: request.now,
                command_at: request.now,
                ..held.clone()
            };
            for vm in candidates.into_iter().take(TRIES_PER_PAGE) {
                let mut email_item = key(email_pk(&held.email), "EMAIL");
                email_item.insert("hostname".into(), s(&vm.hostname));
                let mut items = vec![
                    self.put_item(
                        vm_to_item(&released, version + 1)?,
                        "version = :v",
                        vec![(":v", n(version))],
                    )?,
                    self.put_unconditional(email_item)?,
                ];
                items.extend(self.assign_items(&vm, &moved, request.live_since)?);
                match self.transact(items).await? {
                    None => {
                        let mut vm = vm;
                        vm.assignment = Some(moved);
                        vm.updated_at = request.now;
                        return Ok(MoveOutcome::Moved(Box::new(vm)));
                    }
                    // The participant's VM changed under us: read it again.
                    Some(codes) if codes.first().map(String::as_str) != Some("None") => break,
                    Some(_) => {}
                }
            }
        }
        Err(internal("moving a seat", "too much contention"))
    }

    async fn delete_vm(&self, hostname: &str, now: Millis) -> Result<()> {
        for _ in 0..MAX_ATTEMPTS {
            let Some((vm, version)) = self.get_vm_versioned(hostname, true).await? else {
                return Ok(());
            };
            let mut items = vec![self.delete_item(
                key(vm_pk(hostname), "VM"),
                Some(("version = :v", vec![(":v", n(version))])),
            )?];
            if let Some(a) = &vm.assignment {
                items.push(self.delete_item(key(email_pk(&a.email), "EMAIL"), None)?);
            }
            if let Some(h) = vm.assignment.as_ref().and_then(|a| a.seat_hash.as_ref()) {
                items.push(self.delete_item(key(seat_pk(h), "SEAT"), None)?);
            }
            if vm.is_free_candidate() {
                items.push(counter_update(&self.table, -1)?);
            }
            // Its spend goes to the ledger in the same transaction that ends the record.
            if let Some(record) = vm.spend_record(Some(now)) {
                items.push(self.put_item(
                    spend::ledger_item(&record)?,
                    "attribute_not_exists(pk)",
                    vec![],
                )?);
            }
            if self.transact(items).await?.is_none() {
                return Ok(());
            }
        }
        Err(internal("deleting a VM", "too much contention"))
    }
}
