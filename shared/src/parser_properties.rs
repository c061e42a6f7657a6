//! Property tests for every parser of user input in the core: none panics on any input,
//! what one accepts keeps the parser's promise, and well-formed input is accepted.

use proptest::prelude::*;
use serde_json::Value;

use crate::domain::api_keys::{looks_like_key, ApiKey, KEY_PREFIX};
use crate::domain::collect::{CollectedPath, Patterns, MAX_PATH_BYTES};
use crate::domain::crd::{valid_user_name, CrdCommand, CRD_REDIRECT_URL, CRD_START_HOST};
use crate::domain::email::Email;
use crate::domain::instances::{validate_image, validate_ssh_key, NewInstance};
use crate::domain::offers::{OfferQuery, MAX_OFFERS};
use crate::domain::pools::parse_pools;
use crate::domain::requests::{NewRequest, RequestStatus, MAX_GPUS_PER_REQUEST};
use crate::domain::secrets::{log_stream_hostname, SeatToken, TokenHash};
use crate::domain::vm::{GpuHealth, VmStatus};
use crate::usecases::admin::parse_vm_count;
use crate::usecases::command_log::valid_cursor;
use crate::usecases::requests::parse_request_id;

/// Any string, weighted towards what breaks parsers: multi-byte and combining characters,
/// controls, quotes and shell syntax, next to plain ASCII.
fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,80}",
        proptest::collection::vec(
            prop_oneof![
                Just("é".to_string()),
                Just("\u{200b}".to_string()),
                Just("\u{202e}".to_string()),
                Just("\u{0301}".to_string()),
                Just("🚀".to_string()),
                Just("\0".to_string()),
                Just("\n".to_string()),
                Just("%".to_string()),
                Just("$(".to_string()),
                Just("\"".to_string()),
                Just("'".to_string()),
                Just("@".to_string()),
                Just(".".to_string()),
                Just("-".to_string()),
                Just(" ".to_string()),
                "[a-zA-Z0-9]{1,8}",
            ],
            0..24
        )
        .prop_map(|parts| parts.concat()),
    ]
}

/// Arbitrary JSON, nested a few levels, with numbers at and beyond the edges.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            Just(0i64),
            Just(1),
            Just(-1),
            Just(8),
            Just(9),
            Just(i64::MAX)
        ]
        .prop_map(Value::from),
        nasty_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("user_id".to_string()),
                    Just("gpu_count".to_string()),
                    Just("duration_hours".to_string()),
                    Just("offer_id".to_string()),
                    Just("image".to_string()),
                    Just("ssh_key".to_string()),
                    Just("disk_gb".to_string()),
                    nasty_string(),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn email_parse_is_total_and_normalising(raw in nasty_string()) {
        if let Ok(email) = Email::parse(&raw) {
            let s = email.as_str();
            prop_assert!(s.len() <= 254);
            prop_assert_eq!(s.matches('@').count(), 1);
            prop_assert!(s.is_ascii() && !s.chars().any(|c| c.is_ascii_uppercase()));
            // Parsing what we keep gives the same address.
            prop_assert_eq!(Email::parse(s).ok(), Some(email.clone()));
        }
    }

    #[test]
    fn well_formed_emails_are_accepted_in_any_case(
        local in "[a-zA-Z0-9][a-zA-Z0-9._+-]{0,20}[a-zA-Z0-9]",
        domain in "[a-zA-Z0-9]{1,20}\\.[a-zA-Z]{2,6}",
    ) {
        prop_assume!(!local.contains(".."));
        let lower = Email::parse(&format!("{local}@{domain}"));
        prop_assert!(lower.is_ok());
        let shouted = Email::parse(&format!("  {}@{} ", local.to_uppercase(), domain.to_uppercase()));
        prop_assert_eq!(lower.ok(), shouted.ok());
    }

    #[test]
    fn crd_parse_is_total_and_keeps_only_a_safe_code(raw in nasty_string()) {
        if let Ok(cmd) = CrdCommand::parse(&raw) {
            prop_assert!(!cmd.code().is_empty());
            prop_assert!(cmd.code().chars().all(|c| c.is_ascii_alphanumeric() || "_/-".contains(c)));
            // What we store re-parses to the same code.
            prop_assert_eq!(CrdCommand::parse(&cmd.canonical()).ok(), Some(cmd.clone()));
        }
    }

    #[test]
    fn crd_shell_syntax_is_always_refused(
        code in "[A-Za-z0-9_/-]{1,60}",
        evil in prop_oneof![Just(";"), Just("|"), Just("&"), Just("`"), Just("<"), Just(">"), Just("\n"), Just("$(id)"), Just("${HOME}")],
        // Not at the very end: a trailing line break is whitespace, trimmed like any other.
        at in 0usize..2,
    ) {
        let parts = [
            format!("DISPLAY= {CRD_START_HOST}"),
            format!("--code=\"{code}\""),
            format!("--redirect-url=\"{CRD_REDIRECT_URL}\" --name=$(hostname)"),
        ];
        let mut raw = String::new();
        for (i, p) in parts.iter().enumerate() {
            raw.push_str(p);
            if i == at { raw.push_str(evil); }
            raw.push(' ');
        }
        prop_assert!(CrdCommand::parse(&raw).is_err(), "{raw}");
    }

    #[test]
    fn googles_command_is_accepted_with_its_code(code in "[A-Za-z0-9_/-]{1,200}") {
        let raw = format!("DISPLAY= {CRD_START_HOST} --code=\"{code}\" --redirect-url=\"{CRD_REDIRECT_URL}\" --name=$(hostname)");
        let parsed = CrdCommand::parse(&raw);
        prop_assert_eq!(parsed.as_ref().map(|c| c.code()).ok(), Some(code.as_str()));
    }

    #[test]
    fn seat_tokens_are_exactly_64_lowercase_hex(raw in prop_oneof![nasty_string(), "[0-9a-fA-F]{62,66}"]) {
        let shaped = raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        prop_assert_eq!(SeatToken::parse(&raw).is_some(), shaped);
        if let Some(token) = SeatToken::parse(&raw) {
            prop_assert_eq!(token.hash().len(), 12 + 64);
        }
    }

    #[test]
    fn generated_seat_tokens_parse(now in any::<i64>()) {
        let token = SeatToken::generate(now);
        prop_assert!(SeatToken::parse(token.as_str()).is_some());
    }

    #[test]
    fn api_keys_are_recognised_by_shape_only(raw in prop_oneof![nasty_string(), "gpf_[0-9a-f]{60,68}", "gpf_[0-9a-fé]{64}"]) {
        let shaped = raw.strip_prefix(KEY_PREFIX).is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        prop_assert_eq!(looks_like_key(&raw), shaped);
    }

    #[test]
    fn generated_api_keys_look_like_keys(user in "[a-z]{1,10}") {
        let (_, plain) = ApiKey::generate(&user, "label", 1, 0);
        prop_assert!(looks_like_key(&plain));
    }

    #[test]
    fn cursors_are_20_digits_dash_16_hex(raw in prop_oneof![nasty_string(), "[0-9]{20}-[0-9a-f]{16}", "[0-9é]{20}-[0-9a-fé]{16}", "[0-9]{19,21}-[0-9a-f]{15,17}"]) {
        let b = raw.as_bytes();
        let shaped = b.len() == 37
            && b[..20].iter().all(u8::is_ascii_digit)
            && b[20] == b'-'
            && b[21..].iter().all(u8::is_ascii_hexdigit);
        prop_assert_eq!(valid_cursor(&raw), shaped);
    }

    #[test]
    fn statuses_parse_only_their_names(raw in prop_oneof![nasty_string(), "(running|error|initializing|healthy|n/a|pending|active)"]) {
        prop_assert_eq!(VmStatus::parse(&raw).is_ok(), VmStatus::ALL.iter().any(|s| s.as_str() == raw));
        prop_assert_eq!(GpuHealth::parse(&raw).is_ok(), GpuHealth::ALL.iter().any(|s| s.as_str() == raw));
        if let Ok(s) = RequestStatus::parse(&raw) {
            prop_assert_eq!(s.as_str(), raw.as_str());
        }
    }

    #[test]
    fn vm_counts_are_whole_numbers_within_the_maximum(raw in prop_oneof![nasty_string(), any::<i64>().prop_map(|n| n.to_string()), "-?[0-9]{1,25}"], max in 1u32..1000) {
        match parse_vm_count(&raw, max) {
            Ok(n) => {
                prop_assert!((1..=max).contains(&n));
                prop_assert_eq!(raw.trim().parse::<i64>().ok(), Some(i64::from(n)));
            }
            Err(_) => prop_assert!(raw.trim().parse::<i64>().map_or(true, |n| n < 1 || n > i64::from(max))),
        }
    }

    #[test]
    fn request_ids_are_canonical_uuids(raw in prop_oneof![nasty_string(), "[0-9a-fA-F-]{30,40}"]) {
        if let Ok(id) = parse_request_id(&raw) {
            prop_assert_eq!(id.len(), 36);
            prop_assert_eq!(parse_request_id(&id).ok(), Some(id.clone()));
        }
    }

    #[test]
    fn request_bodies_parse_totally_and_stay_in_range(body in any_json(), max_hours in 1u32..1000) {
        if let Ok(r) = NewRequest::parse(&body, max_hours) {
            prop_assert!((1..=MAX_GPUS_PER_REQUEST).contains(&r.gpu_count));
            prop_assert!((1..=max_hours).contains(&r.duration_hours));
            prop_assert!(!r.user_id.is_empty() && !r.user_id.chars().any(char::is_control));
        }
    }

    #[test]
    fn instance_bodies_parse_totally(body in any_json()) {
        let _ = NewInstance::parse(&body);
    }

    #[test]
    fn images_and_ssh_keys_are_checked_totally(raw in nasty_string()) {
        if validate_image(&raw).is_ok() {
            prop_assert!(raw.starts_with(|c: char| c.is_ascii_alphanumeric()));
            prop_assert!(raw.chars().all(|c| c.is_ascii_alphanumeric() || "._/:@-".contains(c)));
        }
        if validate_ssh_key(&raw).is_ok() {
            prop_assert!(!raw.chars().any(char::is_control));
        }
        let _ = valid_user_name(&raw);
        let _ = parse_pools(&raw);
    }

    #[test]
    fn offer_filters_parse_totally_and_stay_in_range(
        pairs in proptest::collection::vec(
            (
                prop_oneof![
                    Just("provider"), Just("gpu_model"), Just("min_gpu_count"), Just("max_price"),
                    Just("region"), Just("sort"), Just("limit"), Just("spot"), Just("bogus"),
                ].prop_map(str::to_string),
                prop_oneof![nasty_string(), any::<f64>().prop_map(|f| f.to_string()), any::<i64>().prop_map(|n| n.to_string()), Just("NaN".to_string()), Just("inf".to_string()), Just("1e400".to_string())],
            ),
            0..6,
        )
    ) {
        if let Ok(q) = OfferQuery::parse(&pairs) {
            prop_assert!(q.limit <= MAX_OFFERS);
            if let Some(n) = q.min_gpu_count { prop_assert!((1..=64).contains(&n)); }
            if let Some(p) = q.max_price { prop_assert!(p.is_finite() && p > 0.0); }
        }
    }

    #[test]
    fn log_streams_belong_only_to_their_vm(hostname in nasty_string(), other in nasty_string(), forged in nasty_string()) {
        let mine = TokenHash::of(&format!("token-{hostname}"));
        let theirs = TokenHash::of(&format!("token-{other}-x"));
        let stream = mine.log_stream(&hostname);
        prop_assert_eq!(mine.owns_log_stream(&stream), Some(hostname.as_str()));
        prop_assert_eq!(log_stream_hostname(&stream), Some(hostname.as_str()));
        prop_assert_eq!(theirs.owns_log_stream(&stream), None);
        // Any stream it owns is exactly `<hostname>.<its proof>`: a proof cannot be guessed.
        if let Some(h) = mine.owns_log_stream(&forged) {
            prop_assert_eq!(forged.clone(), mine.log_stream(h));
        }
    }

    #[test]
    fn collected_names_never_leave_the_vms_folder(raw in prop_oneof![
        nasty_string(),
        proptest::collection::vec(prop_oneof![Just(".."), Just("."), Just(""), Just("a"), Just("é.slp"), Just("\\"), Just("/")], 0..8)
            .prop_map(|parts| parts.join("/")),
    ], patterns in nasty_string()) {
        if let Ok(p) = CollectedPath::parse(&raw) {
            let name = p.as_str();
            prop_assert!(!name.starts_with('/') && name.len() <= MAX_PATH_BYTES);
            prop_assert!(name.split('/').all(|c| !c.is_empty() && !c.starts_with('.')));
            prop_assert!(!name.chars().any(|c| c.is_control() || c == '\\'));
            // Whatever the patterns, matching answers and never panics.
            if let Ok(patterns) = Patterns::parse(&patterns) {
                let _ = patterns.collects(&p);
            }
        }
    }
}
