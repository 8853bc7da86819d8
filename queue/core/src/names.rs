//! Event file names and the hash that chains events.
//!
//! A name is `<session>-<seq>.json`: `session` is the UTC start time to the
//! millisecond (`YYYYMMDDTHHMMSS.sssZ`) plus `-` and 6 random hex digits, and
//! `seq` is 8 zero-padded digits. Lexical order of names is event order.

use std::fmt::Write;

use sha2::{Digest, Sha256};

/// Length of the timestamp part of a session id.
const STAMP_LEN: usize = "20261125T120000.000Z".len();
/// Length of a whole session id.
pub const SESSION_LEN: usize = STAMP_LEN + 7;

/// A parsed event file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventName {
    /// The session id.
    pub session: String,
    /// The event's position in the session.
    pub seq: u64,
}

impl EventName {
    /// The file name for `session` and `seq`.
    pub fn format(session: &str, seq: u64) -> String {
        format!("{session}-{seq:08}.json")
    }

    /// Parse a file name; `None` if it is not an event name.
    pub fn parse(file_name: &str) -> Option<EventName> {
        let stem = file_name.strip_suffix(".json")?;
        let (session, seq) = stem.rsplit_once('-')?;
        if seq.len() < 8 || !seq.bytes().all(|b| b.is_ascii_digit()) || !is_session_id(session) {
            return None;
        }
        Some(EventName {
            session: session.to_string(),
            seq: seq.parse().ok()?,
        })
    }

    /// The timestamp part of the session id (`YYYYMMDDTHHMMSS.sssZ`).
    pub fn stamp(&self) -> &str {
        &self.session[..STAMP_LEN]
    }
}

/// [`is_session_id`] as a regular expression, for the schemas of what the
/// host exports.
pub const SESSION_PATTERN: &str = r"^[0-9]{8}T[0-9]{6}\.[0-9]{3}Z-[0-9a-f]{6}$";

/// True for `YYYYMMDDTHHMMSS.sssZ-xxxxxx`.
pub fn is_session_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == SESSION_LEN
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'.'
        && b[16..19].iter().all(u8::is_ascii_digit)
        && b[19] == b'Z'
        && b[20] == b'-'
        && b[21..]
            .iter()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

/// Lower-case hex SHA-256 of `bytes`: the `prev` of the next event.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort() {
        let s = "20261125T120000.000Z-0a1b2c";
        let n = EventName::format(s, 7);
        assert_eq!(n, "20261125T120000.000Z-0a1b2c-00000007.json");
        assert_eq!(
            EventName::parse(&n),
            Some(EventName {
                session: s.into(),
                seq: 7
            })
        );
        assert!(EventName::format(s, 9) < EventName::format(s, 10));
        assert!(
            EventName::format(s, 99_999_999) < EventName::format("20261125T120000.001Z-000000", 0)
        );
    }

    #[test]
    fn rejects_other_files() {
        for bad in [
            "heartbeat",
            "x.json",
            "20261125T120000.000Z-0a1b2c-7.json",
            "20261125T120000.000Z-0A1B2C-00000001.json",
        ] {
            assert_eq!(EventName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn hash_is_sha256() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
