//! Item codecs of the VM record (attribute names in docs/dynamodb.md).

use super::*;

pub(super) fn vm_to_item(vm: &Vm, version: u64) -> Result<Item> {
    let mut item = key(vm_pk(&vm.hostname), "VM");
    let order = order_key(vm);
    item.insert("hostname".into(), s(&vm.hostname));
    item.insert("status".into(), s(vm.status.as_str()));
    item.insert("gpu_health".into(), s(vm.gpu_health.as_str()));
    item.insert("in_use".into(), AttributeValue::Bool(vm.in_use));
    item.insert("token_hash".into(), s(vm.token_hash.as_str()));
    item.insert(
        "metrics".into(),
        s(serde_json::to_string(&vm.metrics).map_err(|e| internal("encoding metrics", e))?),
    );
    item.insert("created_at".into(), n(vm.created_at));
    item.insert("updated_at".into(), n(vm.updated_at));
    item.insert("version".into(), n(version));
    item.insert(table::VMS_PK.into(), s("VM"));
    item.insert(table::VMS_SK.into(), s(&order));
    if let Some(reason) = &vm.status_reason {
        item.insert("status_reason".into(), s(reason));
    }
    if let Some(id) = &vm.instance_id {
        item.insert("instance_id".into(), s(id));
    }
    if let Some(t) = vm.last_seen_at {
        item.insert("last_seen_at".into(), n(t));
    }
    if let Some(t) = vm.collect_requested_at {
        item.insert("collect_requested_at".into(), n(t));
    }
    if let Some(t) = vm.collect_answered_at {
        item.insert("collect_answered_at".into(), n(t));
    }
    if let Some(m) = &vm.metering {
        let json = serde_json::to_string(m).map_err(|e| internal("encoding metering", e))?;
        item.insert("metering".into(), s(json));
    }
    if let Some(a) = &vm.assignment {
        item.insert("email".into(), s(&a.email));
        item.insert("crd_command".into(), s(&a.crd_command));
        item.insert("pin".into(), s(&a.pin));
        item.insert("assigned_at".into(), n(a.assigned_at));
        item.insert("command_at".into(), n(a.command_at));
        if let Some(h) = &a.seat_hash {
            item.insert("seat_hash".into(), s(h));
        }
    }
    if vm.is_free_candidate() {
        item.insert(table::FREE_PK.into(), s("FREE"));
        item.insert(table::FREE_SK.into(), s(free_sk(vm)));
    }
    Ok(item)
}

pub(super) fn item_to_vm(item: &Item) -> Result<(Vm, u64)> {
    let bad = |what: &str| internal("decoding a VM", format!("bad or missing {what}"));
    let text = |name: &str| get_s(item, name).ok_or_else(|| bad(name));
    let assignment = get_s(item, "email").map(|email| Assignment {
        email,
        crd_command: get_s(item, "crd_command").unwrap_or_default(),
        pin: get_s(item, "pin").unwrap_or_default(),
        assigned_at: get_n(item, "assigned_at").unwrap_or_default(),
        seat_hash: get_s(item, "seat_hash"),
        command_at: get_n(item, "command_at").unwrap_or_default(),
    });
    let metrics: StartupMetrics =
        serde_json::from_str(&text("metrics")?).map_err(|_| bad("metrics"))?;
    let vm = Vm {
        hostname: text("hostname")?,
        status: VmStatus::parse(&text("status")?).map_err(|_| bad("status"))?,
        status_reason: get_s(item, "status_reason"),
        gpu_health: GpuHealth::parse(&text("gpu_health")?).map_err(|_| bad("gpu_health"))?,
        in_use: matches!(item.get("in_use"), Some(AttributeValue::Bool(true))),
        assignment,
        instance_id: get_s(item, "instance_id"),
        token_hash: TokenHash::from_stored(text("token_hash")?),
        metrics,
        created_at: get_n(item, "created_at").ok_or_else(|| bad("created_at"))?,
        updated_at: get_n(item, "updated_at").ok_or_else(|| bad("updated_at"))?,
        last_seen_at: get_n(item, "last_seen_at"),
        collect_requested_at: get_n(item, "collect_requested_at"),
        collect_answered_at: get_n(item, "collect_answered_at"),
        metering: get_s(item, "metering")
            .map(|m| serde_json::from_str(&m).map_err(|_| bad("metering")))
            .transpose()?,
    };
    Ok((vm, get_n(item, "version").ok_or_else(|| bad("version"))?))
}
