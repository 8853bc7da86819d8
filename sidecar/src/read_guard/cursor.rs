//! Page cursors: where the next page of a list starts, sealed so that only
//! this session's own cursors are taken.
//!
//! A cursor names the list (comments or reviews), the number, the order and
//! the id of the last item the previous page held; the next page starts
//! after that item (or, if it was deleted meanwhile, after where it would
//! be), so items added between two calls are neither repeated nor skipped
//! in oldest-first order. The text is `c1.<list>.<number>.<order>.<id>.<mac>`
//! where the mac is an HMAC-SHA-256 (RFC 2104) under a key drawn at start:
//! a cursor edited by hand, or made by another session, is refused.

use forge_protocol::{Cursor, ErrorCode, IssueNumber, Order, RpcError};
use sha2::{Digest, Sha256};

/// Which list a cursor pages through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    /// `read_comments`.
    Comments,
    /// `read_reviews`.
    Reviews,
}

impl List {
    fn code(self) -> &'static str {
        match self {
            List::Comments => "c",
            List::Reviews => "r",
        }
    }

    fn from_code(s: &str) -> Option<List> {
        match s {
            "c" => Some(List::Comments),
            "r" => Some(List::Reviews),
            _ => None,
        }
    }

    /// `comments` or `reviews`.
    pub fn noun(self) -> &'static str {
        match self {
            List::Comments => "comments",
            List::Reviews => "reviews",
        }
    }
}

/// A verified position: the next page starts after item `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The order the cursor was made for.
    pub order: Order,
    /// Id of the last item of the previous page.
    pub after: u64,
}

/// Seals and opens cursors with this session's key.
pub struct Sealer {
    key: [u8; 32],
}

/// Bytes of the MAC kept in a cursor (128 bits).
const MAC_BYTES: usize = 16;

impl Sealer {
    /// A sealer with a fresh random key.
    pub fn random() -> Sealer {
        let mut key = [0u8; 32];
        // Without the OS's randomness the key is weaker, not absent: mix
        // in the time and the process id so sessions still differ.
        if getrandom::fill(&mut key).is_err() {
            let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
            key.copy_from_slice(&Sha256::digest(seed.as_bytes()));
        }
        Sealer { key }
    }

    /// A sealer with a fixed key, for tests.
    #[cfg(test)]
    pub fn with_key(key: [u8; 32]) -> Sealer {
        Sealer { key }
    }

    fn mac(&self, payload: &str) -> String {
        let tag = hmac_sha256(&self.key, payload.as_bytes());
        tag[..MAC_BYTES]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The cursor for the page after item `after` of `list` of `number`.
    pub fn seal(&self, list: List, number: IssueNumber, order: Order, after: u64) -> String {
        let order = match order {
            Order::OldestFirst => "o",
            Order::NewestFirst => "n",
        };
        let payload = format!("c1.{}.{}.{order}.{after}", list.code(), number.get());
        let mac = self.mac(&payload);
        format!("{payload}.{mac}")
    }

    /// The position `cursor` names, checked against the call it came with:
    /// `list` of `number`, in `order` if one was asked.
    pub fn open(
        &self,
        cursor: &Cursor,
        list: List,
        number: IssueNumber,
        order: Option<Order>,
    ) -> Result<Position, RpcError> {
        let text = cursor.as_str();
        let forged = || {
            RpcError::new(
                ErrorCode::InvalidParams,
                format!(
                    "this cursor was not made by this sidecar session (it was changed, or comes from \
                     an earlier session); send the `next_cursor` of the previous {} answer unchanged, \
                     or leave `cursor` out to start from the first page",
                    list.noun()
                ),
            )
        };
        let (payload, mac) = text.rsplit_once('.').ok_or_else(forged)?;
        if !constant_time_eq(self.mac(payload).as_bytes(), mac.as_bytes()) {
            return Err(forged());
        }
        let parts: Vec<&str> = payload.split('.').collect();
        let [version, kind, n, o, after] = parts.as_slice() else {
            return Err(forged());
        };
        let (Some(kind), Ok(n), Ok(after)) = (
            List::from_code(kind),
            n.parse::<u64>(),
            after.parse::<u64>(),
        ) else {
            return Err(forged());
        };
        let made_for = match *o {
            "o" => Order::OldestFirst,
            "n" => Order::NewestFirst,
            _ => return Err(forged()),
        };
        if *version != "c1" {
            return Err(forged());
        }
        if kind != list || n != number.get() {
            return Err(RpcError::new(
                ErrorCode::InvalidParams,
                format!(
                    "this cursor pages through the {} of #{n}, not the {} of #{}; use it with \
                     read_{} on #{n}, or leave `cursor` out to start #{} from the first page",
                    kind.noun(),
                    list.noun(),
                    number.get(),
                    kind.noun(),
                    number.get()
                ),
            ));
        }
        if let Some(asked) = order
            && asked != made_for
        {
            return Err(RpcError::new(
                ErrorCode::InvalidParams,
                format!(
                    "this cursor continues {} order, but `order` asks for {}; leave `order` out to \
                     go on, or leave `cursor` out to start again in the other order",
                    made_for.as_str(),
                    asked.as_str()
                ),
            ));
        }
        Ok(Position {
            order: made_for,
            after,
        })
    }
}

/// HMAC-SHA-256 (RFC 2104).
fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut padded = [0u8; BLOCK];
    padded[..key.len()].copy_from_slice(key);
    let pad = |byte: u8| padded.map(|k| k ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: u64) -> IssueNumber {
        IssueNumber::new(v).unwrap()
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        // Key "Jefe", zero-padded to 32 bytes: the same HMAC as the 4-byte key.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let tag = hmac_sha256(&key, b"what do ya want for nothing?");
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_sealed_cursor_opens_for_its_own_list_only() {
        let s = Sealer::with_key([7; 32]);
        let text = s.seal(List::Comments, n(17), Order::NewestFirst, 5003);
        let cursor = Cursor::new(text.clone()).expect("a valid cursor text");
        let pos = s.open(&cursor, List::Comments, n(17), None).unwrap();
        assert_eq!((pos.order, pos.after), (Order::NewestFirst, 5003));
        let err = s.open(&cursor, List::Comments, n(18), None).unwrap_err();
        assert!(
            err.message
                .contains("comments of #17, not the comments of #18"),
            "{}",
            err.message
        );
        let err = s.open(&cursor, List::Reviews, n(17), None).unwrap_err();
        assert!(err.message.contains("not the reviews"), "{}", err.message);
        let err = s
            .open(&cursor, List::Comments, n(17), Some(Order::OldestFirst))
            .unwrap_err();
        assert!(
            err.message.contains("continues newest_first"),
            "{}",
            err.message
        );
    }

    #[test]
    fn edited_and_foreign_cursors_are_refused() {
        let s = Sealer::with_key([7; 32]);
        let text = s.seal(List::Comments, n(17), Order::OldestFirst, 5003);
        let edited = text.replace(".5003.", ".1.");
        let other = Sealer::with_key([8; 32]).seal(List::Comments, n(17), Order::OldestFirst, 5003);
        for bad in [
            edited.as_str(),
            other.as_str(),
            "c1.c.17.o.1",
            "garbage",
            "a.b",
        ] {
            let err = s
                .open(&Cursor::new(bad).unwrap(), List::Comments, n(17), None)
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidParams);
            assert!(
                err.message.contains("not made by this sidecar session"),
                "{bad}: {}",
                err.message
            );
        }
    }
}
