//! `template.yaml` against the code: it is exactly what the generator writes; every function
//! exists, runs the shared artifact and is wired to what the catalogue says, every HTTP route in the template is the local router's route with the same function
//! (and back), each function's environment satisfies its configuration loader, and its IAM
//! statements grant what its catalogue entry needs and nothing more.

use std::collections::{BTreeMap, BTreeSet};

use functions::catalog::{
    self, CloudAccess, Ec2Access, NetworkAccess, Setting, StoreAccess, Trigger, WorkAccess,
    FUNCTIONS,
};
use functions::routes::{self, Match, ROUTES};
use serde_yaml::Value;

fn template() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `(logical id, function name, properties)` of every `AWS::Serverless::Function`: the name
/// is its `GPUFLEET_FUNCTION`, and it runs the one shared artifact.
fn functions(t: &Value) -> Vec<(String, String, Value)> {
    let shared_code = t["Globals"]["Function"]["CodeUri"].as_str().unwrap();
    assert_eq!(shared_code, "target/lambda/gpufleet-lambda/");
    let mut out = Vec::new();
    for (id, resource) in t["Resources"].as_mapping().unwrap() {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let props = resource["Properties"].clone();
        assert!(
            props["CodeUri"].is_null(),
            "{id:?} has its own code: every function runs the shared artifact"
        );
        let name = props["Environment"]["Variables"]["GPUFLEET_FUNCTION"]
            .as_str()
            .unwrap_or_else(|| panic!("{id:?} does not say which function it is"));
        out.push((id.as_str().unwrap().to_string(), name.to_string(), props));
    }
    out
}

fn tag_of(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((t.tag.to_string(), &t.value)),
        _ => None,
    }
}

/// The value a template expression would have at deploy time, near enough for a config
/// loader: parameters take their default or a sample, resources a placeholder.
fn resolve(t: &Value, v: &Value) -> String {
    let samples: BTreeMap<&str, &str> = [
        ("AmiId", "ami-0123456789abcdef0"),
        ("AgentUrl", "https://downloads.example.org/gpufleet"),
        ("AdminPasswordSecret", "gpufleet-admin"),
    ]
    .into();
    let parameter = |name: &str| -> Option<String> {
        let p = &t["Parameters"][name];
        if p.is_null() {
            return None;
        }
        Some(match &p["Default"] {
            Value::Null => samples
                .get(name)
                .unwrap_or_else(|| panic!("no sample for parameter {name}"))
                .to_string(),
            Value::String(s) => s.clone(),
            other => serde_yaml::to_string(other).unwrap().trim().to_string(),
        })
    };
    match (v, tag_of(v)) {
        (Value::String(s), _) => s.clone(),
        (Value::Number(n), _) => n.to_string(),
        (Value::Bool(b), _) => b.to_string(),
        (_, Some((tag, inner))) if tag == "!Ref" => {
            let name = inner.as_str().unwrap();
            parameter(name).unwrap_or_else(|| {
                assert!(
                    !t["Resources"][name].is_null(),
                    "!Ref {name}: no such resource"
                );
                format!("resource-{name}")
            })
        }
        (_, Some((tag, inner))) if tag == "!Sub" => {
            let mut s = inner.as_str().unwrap().to_string();
            while let Some(start) = s.find("${") {
                let end = start + s[start..].find('}').unwrap();
                let name = &s[start + 2..end];
                let value = parameter(name).unwrap_or_else(|| format!("sub-{name}"));
                s.replace_range(start..=end, &value);
            }
            s
        }
        (_, Some((tag, _))) if tag == "!GetAtt" => "getatt".into(),
        (_, Some((tag, inner))) if tag == "!If" => {
            let args = inner.as_sequence().unwrap();
            let condition = &t["Conditions"][args[0].as_str().unwrap()];
            assert!(!condition.is_null(), "no condition {:?}", args[0]);
            if condition_holds(t, condition) {
                resolve(t, &args[1])
            } else {
                resolve(t, &args[2])
            }
        }
        _ => panic!("cannot resolve {v:?}"),
    }
}

/// `!Not`, `!Equals` over resolved values: enough for the template's conditions.
fn condition_holds(t: &Value, c: &Value) -> bool {
    match tag_of(c) {
        Some((tag, inner)) if tag == "!Not" => {
            !condition_holds(t, &inner.as_sequence().unwrap()[0])
        }
        Some((tag, inner)) if tag == "!Equals" => {
            let args = inner.as_sequence().unwrap();
            resolve(t, &args[0]) == resolve(t, &args[1])
        }
        _ => panic!("cannot evaluate condition {c:?}"),
    }
}

/// A function's environment: the globals, overlaid with its own variables.
fn environment(t: &Value, props: &Value) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for vars in [
        &t["Globals"]["Function"]["Environment"]["Variables"],
        &props["Environment"]["Variables"],
    ] {
        if let Some(vars) = vars.as_mapping() {
            for (k, v) in vars {
                env.insert(k.as_str().unwrap().to_string(), resolve(t, v));
            }
        }
    }
    env
}

fn scalars(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(items) => items.iter().flat_map(scalars).collect(),
        Value::Tagged(t) => scalars(&t.value),
        _ => Vec::new(),
    }
}

/// Every inline IAM statement of a function's `Policies`.
fn statements(props: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for policy in props["Policies"].as_sequence().unwrap() {
        if let Some(statements) = policy["Statement"].as_sequence() {
            out.extend(statements.iter().cloned());
        }
    }
    out
}

/// Names of the SAM policy templates a function uses (`DynamoDBReadPolicy`, ...).
fn policy_templates(props: &Value) -> BTreeSet<String> {
    props["Policies"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_mapping())
        .flat_map(|m| m.keys().filter_map(|k| k.as_str().map(String::from)))
        .filter(|k| k != "Version" && k != "Statement")
        .collect()
}

/// The committed template is exactly what the generator writes: regenerate with
/// `make template` after changing the catalogue, the routes or `infra/template.base.yaml`.
#[test]
fn the_committed_template_is_the_generated_one() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    let committed = std::fs::read_to_string(path).unwrap();
    let generated = functions::template::render();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or(
                committed.lines().count().min(generated.lines().count()),
                |n| n,
            );
        panic!(
            "template.yaml is not what `make template` writes; first difference at line {}:\n  committed: {:?}\n  generated: {:?}",
            line + 1,
            committed.lines().nth(line),
            generated.lines().nth(line)
        );
    }
}

#[test]
fn every_function_in_the_template_is_one_of_the_catalogue_and_back() {
    let t = template();
    let in_template: BTreeSet<String> = functions(&t).into_iter().map(|f| f.1).collect();
    let in_catalogue: BTreeSet<String> = FUNCTIONS.iter().map(|f| f.name.to_string()).collect();
    assert_eq!(in_template, in_catalogue);
    assert_eq!(
        functions(&t).len(),
        FUNCTIONS.len(),
        "a function deployed twice"
    );
}

/// The artifact refuses to start, naming the variable, unless it is told which function of
/// the catalogue it is.
#[test]
fn the_artifact_needs_to_know_which_function_it_is() {
    let missing = functions::lambda::function_from(|_| None).err().unwrap();
    assert!(
        missing.to_string().contains("GPUFLEET_FUNCTION"),
        "{missing}"
    );
    let blank = functions::lambda::function_from(|_| Some("  ".into()))
        .err()
        .unwrap();
    assert!(blank.to_string().contains("GPUFLEET_FUNCTION"), "{blank}");
    let unknown = functions::lambda::function_from(|_| Some("launch-everything".into()))
        .err()
        .unwrap();
    let message = unknown.to_string();
    assert!(
        message.contains("GPUFLEET_FUNCTION") && message.contains("launch-everything"),
        "{message}"
    );
    for f in FUNCTIONS {
        let found = functions::lambda::function_from(|k| {
            (k == "GPUFLEET_FUNCTION").then(|| f.name.to_string())
        })
        .unwrap();
        assert_eq!(found.name, f.name);
    }
}

#[test]
fn template_routes_are_the_local_routers_routes() {
    let t = template();
    let mut in_template = BTreeSet::new();
    for (id, bin, props) in functions(&t) {
        let function = catalog::function(&bin).unwrap();
        for (_, event) in props["Events"].as_mapping().unwrap() {
            let kind = event["Type"].as_str().unwrap();
            if function.trigger != Trigger::Http {
                assert_ne!(kind, "HttpApi", "{id} is not an HTTP function");
                continue;
            }
            assert_eq!(kind, "HttpApi", "{id}");
            let p = &event["Properties"];
            assert_eq!(
                tag_of(&p["ApiId"]).map(|(tag, _)| tag).as_deref(),
                Some("!Ref")
            );
            let method = p["Method"].as_str().unwrap().to_uppercase();
            let path = p["Path"].as_str().unwrap().to_string();
            // The local server dispatches through `routes::find`: a concrete request to
            // this path must reach the same function there.
            let concrete: String = path
                .split('/')
                .map(|s| if s.starts_with('{') { "sample-1" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            match routes::find(&method.parse().unwrap(), &concrete) {
                Match::Found(route, _) => assert_eq!(route.function, bin, "{method} {path}"),
                _ => panic!("{method} {path} ({id}) is not served by the local router"),
            }
            assert!(
                in_template.insert((method, path, bin.clone())),
                "duplicate route"
            );
        }
    }
    let in_router: BTreeSet<(String, String, String)> = ROUTES
        .iter()
        .map(|r| {
            (
                r.method.to_string(),
                r.path.to_string(),
                r.function.to_string(),
            )
        })
        .collect();
    assert_eq!(in_template, in_router);
}

#[test]
fn non_http_functions_have_their_triggers() {
    let t = template();
    for (id, bin, props) in functions(&t) {
        let function = catalog::function(&bin).unwrap();
        let events: Vec<&Value> = props["Events"].as_mapping().unwrap().values().collect();
        match function.trigger {
            Trigger::Http => {}
            Trigger::Queue => {
                assert_eq!(events.len(), 1, "{id}");
                let e = events[0];
                assert_eq!(e["Type"].as_str(), Some("SQS"));
                let p = &e["Properties"];
                assert_eq!(
                    scalars(&p["FunctionResponseTypes"]),
                    ["ReportBatchItemFailures"]
                );
                assert!(p["BatchSize"].as_u64().unwrap() <= 10);
                // The queue has a dead-letter queue, and stays invisible long enough for a
                // whole batch (AWS advises six times the function timeout).
                let queue = scalars(&p["Queue"])[0]
                    .split('.')
                    .next()
                    .unwrap()
                    .to_string();
                let q = &t["Resources"][queue.as_str()]["Properties"];
                assert!(
                    !q["RedrivePolicy"]["deadLetterTargetArn"].is_null(),
                    "{queue} DLQ"
                );
                let timeout = props["Timeout"].as_u64().unwrap();
                assert!(q["VisibilityTimeout"].as_u64().unwrap() >= 6 * timeout);
            }
            Trigger::Schedule => {
                assert_eq!(events.len(), 1, "{id}");
                assert_eq!(events[0]["Type"].as_str(), Some("Schedule"));
            }
            Trigger::LogsSubscription => {
                assert_eq!(events.len(), 1, "{id}");
                assert_eq!(events[0]["Type"].as_str(), Some("CloudWatchLogs"));
                let group = scalars(&events[0]["Properties"]["LogGroupName"]);
                assert_eq!(group, ["VmLogGroup"]);
                // The VMs are told to write to that group.
                let provision = functions(&t)
                    .into_iter()
                    .find(|f| f.1 == "provision")
                    .unwrap();
                assert_eq!(
                    scalars(&provision.2["Environment"]["Variables"]["GPUFLEET_VM_LOG_GROUP"]),
                    ["VmLogGroup"]
                );
            }
        }
    }
}

#[test]
fn every_function_has_the_environment_its_configuration_needs() {
    let t = template();
    for (id, bin, props) in functions(&t) {
        let env = environment(&t, &props);
        let loaded = functions::lambda::function_config(&bin, |k| env.get(k).cloned());
        if let Err(e) = loaded {
            panic!("{id} ({bin}) would not start: {e}");
        }
        let function = catalog::function(&bin).unwrap();
        // The admin password only where an admin route is served.
        assert_eq!(
            env.contains_key("GPUFLEET_ADMIN_PASSWORD"),
            function.needs_admin_password(),
            "{id}: admin password"
        );
        // The Vast.ai key only where a GPU cloud is used.
        assert_eq!(
            env.contains_key("GPUFLEET_VAST_API_KEY"),
            function.clouds != CloudAccess::None,
            "{id}: Vast.ai key"
        );
    }
    // The check has teeth: without a variable it needs, the provisioner does not start.
    let (_, _, provision) = functions(&t)
        .into_iter()
        .find(|f| f.1 == "provision")
        .unwrap();
    for needed in [
        "GPUFLEET_AMI",
        "GPUFLEET_API_URL",
        "GPUFLEET_QUEUE_URL",
        "GPUFLEET_TABLE",
    ] {
        let mut env = environment(&t, &provision);
        env.remove(needed);
        match functions::lambda::function_config("provision", |k| env.get(k).cloned()) {
            Err(e) => assert!(e.to_string().contains(needed), "{e}"),
            Ok(_) => panic!("provision started without {needed}"),
        }
    }
}

#[test]
fn no_policy_grants_everything_and_each_function_gets_only_what_it_uses() {
    let t = template();
    // Roles defined directly in the template (the VMs' role) too.
    for (id, resource) in t["Resources"].as_mapping().unwrap() {
        if resource["Type"].as_str() == Some("AWS::IAM::Role") {
            for policy in resource["Properties"]["Policies"].as_sequence().unwrap() {
                for s in policy["PolicyDocument"]["Statement"].as_sequence().unwrap() {
                    assert_no_wildcard_grant(&format!("{id:?}"), s);
                    for action in scalars(&s["Action"]) {
                        assert!(action.starts_with("logs:"), "{id:?}: {action}");
                    }
                }
            }
        }
    }
    for (id, bin, props) in functions(&t) {
        let f = catalog::function(&bin).unwrap();
        let statements = statements(&props);
        for s in &statements {
            assert_no_wildcard_grant(&id, s);
        }
        let actions: BTreeSet<String> = statements
            .iter()
            .flat_map(|s| scalars(&s["Action"]))
            .collect();
        let templates = policy_templates(&props);

        let expected_store = match f.store {
            StoreAccess::Read => "DynamoDBReadPolicy",
            StoreAccess::ReadWrite => "DynamoDBCrudPolicy",
        };
        let mut expected_templates = BTreeSet::from([expected_store.to_string()]);
        if f.sends_jobs {
            expected_templates.insert("SQSSendMessagePolicy".into());
        }
        assert_eq!(templates, expected_templates, "{id}");

        let mut expected_actions = BTreeSet::new();
        if f.trigger == Trigger::Queue {
            expected_actions.insert("sqs:ChangeMessageVisibility");
        }
        if f.ec2 != Ec2Access::None {
            expected_actions.insert("ec2:DescribeInstances");
        }
        if matches!(f.ec2, Ec2Access::Terminate | Ec2Access::Launch) {
            expected_actions.insert("ec2:TerminateInstances");
        }
        if f.checks_queue {
            expected_actions.insert("sqs:GetQueueAttributes");
        }
        if f.ec2 == Ec2Access::Launch {
            expected_actions.extend(["ec2:RunInstances", "ec2:CreateTags", "iam:PassRole"]);
        }
        if f.network != NetworkAccess::None {
            expected_actions.extend([
                "ec2:DescribeVpcs",
                "ec2:DescribeSubnets",
                "ec2:DescribeInstances",
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeImages",
            ]);
        }
        if f.network == NetworkAccess::Write {
            expected_actions.extend([
                "ec2:CreateNetworkInterface",
                "ec2:CreateTags",
                "ec2:AttachNetworkInterface",
                "ec2:ModifyInstanceAttribute",
            ]);
        }
        if f.ec2 == Ec2Access::Tag {
            expected_actions.extend(["ec2:DescribeTags", "ec2:CreateTags"]);
        }
        // Whatever launches or prices a start reads spot prices (a machine records its
        // price at launch; a budget holds its first hour).
        if f.ec2 == Ec2Access::Launch || f.settings.contains(&Setting::Prices) {
            expected_actions.insert("ec2:DescribeSpotPriceHistory");
        }
        if f.clouds != CloudAccess::None {
            expected_actions.extend([
                "ec2:DescribeInstances",
                "ec2:DescribeInstanceTypes",
                "ec2:DescribeInstanceTypeOfferings",
                "ec2:DescribeSpotPriceHistory",
            ]);
        }
        // Each instance action only in the function that performs it.
        match f.clouds {
            CloudAccess::Start => drop(expected_actions.insert("ec2:StartInstances")),
            CloudAccess::Stop => drop(expected_actions.insert("ec2:StopInstances")),
            CloudAccess::Terminate => drop(expected_actions.insert("ec2:TerminateInstances")),
            _ => {}
        }
        if f.clouds == CloudAccess::Create {
            // Instances of the offers API get no instance profile: no iam:PassRole.
            expected_actions.extend(["ec2:RunInstances", "ec2:CreateTags"]);
        }
        // The bucket of participants' work: each function only what its access says.
        match f.work {
            WorkAccess::None => {}
            WorkAccess::Presign => {
                expected_actions.extend(["s3:ListBucket", "s3:GetObject", "s3:PutObject"])
            }
            WorkAccess::Read => expected_actions.extend(["s3:ListBucket", "s3:GetObject"]),
            WorkAccess::Manifests => {
                expected_actions.extend(["s3:ListBucket", "s3:GetObject", "s3:PutObject"])
            }
            WorkAccess::Export => expected_actions.extend([
                "s3:ListBucket",
                "s3:GetObject",
                "s3:PutObject",
                "s3:AbortMultipartUpload",
                "s3:DeleteObject",
            ]),
            WorkAccess::Delete => {
                expected_actions.extend(["s3:ListBucket", "s3:GetObject", "s3:DeleteObject"])
            }
        }
        let expected_actions: BTreeSet<String> =
            expected_actions.into_iter().map(String::from).collect();
        assert_eq!(actions, expected_actions, "{id}");
        for s in &statements {
            let actions = scalars(&s["Action"]);
            if actions.iter().any(|a| a.starts_with("s3:")) {
                let resources = scalars(&s["Resource"]);
                assert!(
                    resources.iter().all(|r| r.contains("CollectBucket")),
                    "{id}: S3 only on the collect bucket: {resources:?}"
                );
                // Only the download assembler writes exports; only the planner presigns work/.
                if actions.iter().any(|a| a == "s3:PutObject") {
                    for r in &resources {
                        let allowed = match f.work {
                            WorkAccess::Presign => r.contains("/work/"),
                            WorkAccess::Manifests => r.contains("/vms/"),
                            WorkAccess::Export => r.contains("/exports/"),
                            _ => false,
                        };
                        assert!(allowed, "{id}: PutObject on {r}");
                    }
                }
            }
        }

        for s in &statements {
            let actions = scalars(&s["Action"]);
            let resources = scalars(&s["Resource"]).join(" ");
            let condition = serde_yaml::to_string(&s["Condition"]).unwrap();
            // Start, stop and terminate only this deployment's instances.
            if actions.iter().any(|a| {
                a == "ec2:TerminateInstances"
                    || a == "ec2:StartInstances"
                    || a == "ec2:StopInstances"
            }) {
                assert!(
                    condition.contains("aws:ResourceTag/gpufleet:deployment"),
                    "{id}"
                );
            }
            // Create an interface only with the deployment tag.
            if actions.iter().any(|a| a == "ec2:CreateNetworkInterface")
                && resources.contains(":network-interface/")
            {
                assert!(
                    condition.contains("aws:RequestTag/gpufleet:deployment"),
                    "{id}"
                );
            }
            // Launch an instance only with the deployment tag; tag only at launch.
            if actions.iter().any(|a| a == "ec2:RunInstances") && resources.contains(":instance/") {
                assert!(
                    condition.contains("aws:RequestTag/gpufleet:deployment"),
                    "{id}"
                );
            }
            // Tags only at launch, or only the pool tag of this deployment's instances.
            if actions.iter().any(|a| a == "ec2:CreateTags") {
                assert!(
                    condition.contains("ec2:CreateAction: RunInstances")
                        || condition.contains("ec2:CreateAction: CreateNetworkInterface")
                        || (condition.contains("aws:ResourceTag/gpufleet:deployment")
                            && condition.contains("aws:TagKeys")
                            && condition.contains("gpufleet:pool")),
                    "{id}: {condition}"
                );
            }
            if actions.iter().any(|a| a == "iam:PassRole") {
                assert_eq!(scalars(&s["Resource"]), ["VmRole.Arn"], "{id}");
            }
        }
    }
}

fn assert_no_wildcard_grant(id: &str, statement: &Value) {
    let actions = scalars(&statement["Action"]);
    let resources = scalars(&statement["Resource"]);
    for action in &actions {
        assert!(
            action != "*" && !action.ends_with(":*"),
            "{id}: action {action}"
        );
    }
    if resources.iter().any(|r| r == "*") {
        // Only actions AWS does not scope to resources may take "*".
        for action in &actions {
            assert!(action.starts_with("ec2:Describe"), "{id}: {action} on *");
        }
    }
}

#[test]
fn the_long_poll_fits_in_its_functions_timeout() {
    let t = template();
    let (_, _, props) = functions(&t)
        .into_iter()
        .find(|f| f.1 == "vm-startup")
        .unwrap();
    let env = environment(&t, &props);
    let long_poll: u64 = env["GPUFLEET_LONG_POLL_SECONDS"].parse().unwrap();
    assert!(props["Timeout"].as_u64().unwrap() > long_poll);
}

/// The bucket of participants' work is private, encrypted and expiring, and the VMs' role
/// has no S3 access at all (a VM only ever holds presigned URLs).
#[test]
fn the_collect_bucket_is_private_encrypted_expiring_and_vms_get_none_of_it() {
    let t = template();
    let bucket = &t["Resources"]["CollectBucket"];
    assert_eq!(bucket["Type"].as_str(), Some("AWS::S3::Bucket"));
    let props = &bucket["Properties"];
    let block = &props["PublicAccessBlockConfiguration"];
    for flag in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(block[flag].as_bool(), Some(true), "{flag}");
    }
    let sse = serde_yaml::to_string(&props["BucketEncryption"]).unwrap();
    assert!(sse.contains("SSEAlgorithm"), "{sse}");
    let rules = serde_yaml::to_string(&props["LifecycleConfiguration"]).unwrap();
    assert!(rules.contains("ExpirationInDays"), "{rules}");
    assert!(rules.contains("AbortIncompleteMultipartUpload"), "{rules}");
    let policy = serde_yaml::to_string(&t["Resources"]["CollectBucketPolicy"]).unwrap();
    assert!(policy.contains("aws:SecureTransport"), "{policy}");
    let vm_role = serde_yaml::to_string(&t["Resources"]["VmRole"]).unwrap();
    assert!(!vm_role.contains("s3:"), "{vm_role}");
    // Only the functions whose catalogue entry asks for the bucket are told its name.
    for (id, name, props) in functions(&t) {
        let env = environment(&t, &props);
        let f = catalog::function(&name).unwrap();
        assert_eq!(
            env.contains_key("GPUFLEET_COLLECT_BUCKET"),
            f.work != WorkAccess::None,
            "{id}"
        );
    }
}
