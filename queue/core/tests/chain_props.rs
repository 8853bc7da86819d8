//! Property: for any sequence of events the writer appends, the chain
//! verifies; and changing any byte of any event but the last is detected.

use forge_protocol::DoneStatus;
use forge_protocol::event::{Done, EventBody, Intent, Op, Outcome};
use forge_queue::QueueWriter;
use forge_queue::verify::verify_dir;
use proptest::prelude::*;

fn body() -> impl Strategy<Value = EventBody> {
    prop_oneof![
        (any::<u64>(), "[a-z_]{1,20}", any::<u64>()).prop_map(|(op_id, op, target)| {
            EventBody::Intent(Intent {
                op_id,
                op,
                target: Some(target),
            })
        }),
        (
            any::<u64>(),
            "\\PC{0,60}",
            prop_oneof![
                Just(Outcome::Ok),
                Just(Outcome::Denied),
                Just(Outcome::Error)
            ]
        )
            .prop_map(|(op_id, summary, outcome)| EventBody::Op(Op {
                op_id,
                op: "post_comment".into(),
                target: Some(17),
                outcome,
                summary,
                error: None,
                duration_ms: 1,
                peer: None,
                foreign_refs: None,
                mentions: None,
                coalesced: None,
            })),
        "\\PC{0,200}".prop_map(|summary| EventBody::Done(Done {
            status: DoneStatus::Success,
            summary,
            warnings: vec![]
        })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn appended_chains_verify_and_edits_are_caught(
        bodies in proptest::collection::vec(body(), 2..12),
        pick in any::<prop::sample::Index>(),
        byte in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let writer = QueueWriter::open(dir.path()).unwrap();
        let mut names = Vec::new();
        for b in bodies {
            names.push(writer.append(b).unwrap().name);
        }
        let report = verify_dir(dir.path()).unwrap();
        prop_assert!(report.is_intact(), "{}", report);
        prop_assert_eq!(report.event_count(), names.len() as u64);

        // Any event but the last: the next event's prev no longer matches.
        let victim = dir.path().join("new").join(&names[pick.index(names.len() - 1)]);
        let mut bytes = std::fs::read(&victim).unwrap();
        let i = byte.index(bytes.len());
        bytes[i] ^= flip;
        std::fs::write(&victim, &bytes).unwrap();
        let report = verify_dir(dir.path()).unwrap();
        prop_assert!(!report.is_intact(), "an edit of byte {} went unnoticed", i);
    }
}
