//! Signed notes (c2sp.org/signed-note) with Ed25519 keys: the key formats,
//! signing and strict opening.
//!
//! A signed note is a UTF-8 text ending in a newline, a blank line, then
//! signature lines `— <key name> <base64(key hash || signature)>`. The text
//! may hold no ASCII control character other than newline. The signature
//! covers the text including its final newline.
//!
//! Keys, as any implementation of the format reads them:
//!
//! ```text
//! signing key   PRIVATE+KEY+<name>+<hash>+<base64(0x01 || 32-byte seed)>
//! verifier key  <name>+<hash>+<base64(0x01 || 32-byte public key)>
//! ```
//!
//! `<hash>` is 8 lower-case hex digits: the first 4 bytes (big-endian) of
//! SHA-256(`<name>` || `\n` || 0x01 || public key); 0x01 names Ed25519, the
//! only algorithm. A name is non-empty UTF-8 with no white space and no `+`.
//!
//! The format is small and exact, so it is written here over
//! `ed25519-dalek` rather than through a crate that would bring second
//! copies of the hash and encoding crates the workspace already uses; the
//! end-to-end tests open the notes this module signs with Go's
//! `golang.org/x/mod/sumdb/note`, an independent implementation.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _};
use sha2::{Digest, Sha256};

/// The algorithm byte of Ed25519 keys.
const ALG_ED25519: u8 = 0x01;
/// Starts every signature line: em dash, space.
const SIG_PREFIX: &str = "\u{2014} ";
/// Most signature lines read from one note (as other implementations do).
const MAX_SIGNATURES: usize = 100;

/// Why a key or a note was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// A key string is not in the signed-note key format.
    #[error("not a signed-note {kind} key: {reason}")]
    BadKey {
        /// `signing` or `verifier`.
        kind: &'static str,
        /// What is wrong (never the key material).
        reason: &'static str,
    },
    /// A key name is empty, or holds white space or `+`.
    #[error("invalid key name {0:?}: it must be non-empty, without spaces or '+'")]
    BadName(String),
    /// The text to sign is not a valid note text.
    #[error(
        "note text must be non-empty, end in a newline and hold no control character but newline"
    )]
    BadText,
    /// The bytes are not a signed note.
    #[error("malformed signed note: {0}")]
    Malformed(&'static str),
    /// A signature line names the key but does not verify: the text was
    /// changed after signing, or the signature forged.
    #[error("the signature by {0} does not verify: the note was altered or not signed by this key")]
    BadSignature(String),
    /// No signature line is by the key.
    #[error("not signed by {0}")]
    NotSigned(String),
}

/// True for a valid key name: non-empty, no Unicode white space, no `+`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(char::is_whitespace) && !name.contains('+')
}

/// The key hash of `name` and the encoded public key (algorithm byte first).
fn key_hash(name: &str, key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update(key);
    let sum = h.finalize();
    u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]])
}

fn encode_key(public: &[u8; 32]) -> [u8; 33] {
    let mut out = [0u8; 33];
    out[0] = ALG_ED25519;
    out[1..].copy_from_slice(public);
    out
}

/// Split `name+hash+base64` (the base64 may hold `+` itself).
fn split_key(s: &str) -> Option<(&str, &str, &str)> {
    let (name, rest) = s.split_once('+')?;
    let (hash, key) = rest.split_once('+')?;
    Some((name, hash, key))
}

fn parse_hash(hex: &str) -> Option<u32> {
    (hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(hex, 16).ok())
        .flatten()
}

/// An Ed25519 signing key with its name. `Debug` and `Display` print `***`:
/// the key must appear in no log, event, error or response.
#[derive(Clone)]
pub struct SigningKey {
    name: String,
    hash: u32,
    key: ed25519_dalek::SigningKey,
}

impl SigningKey {
    /// A new random key named `name` (seed from the operating system).
    pub fn generate(name: &str) -> Result<SigningKey, NoteError> {
        if !is_valid_name(name) {
            return Err(NoteError::BadName(name.to_string()));
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|_| NoteError::BadKey {
            kind: "signing",
            reason: "the operating system's random source failed",
        })?;
        Ok(SigningKey::from_seed(name, &seed))
    }

    fn from_seed(name: &str, seed: &[u8; 32]) -> SigningKey {
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        let hash = key_hash(name, &encode_key(key.verifying_key().as_bytes()));
        SigningKey {
            name: name.to_string(),
            hash,
            key,
        }
    }

    /// Parse `PRIVATE+KEY+<name>+<hash>+<base64>` (surrounding white space,
    /// such as a file's final newline, is ignored).
    pub fn parse(s: &str) -> Result<SigningKey, NoteError> {
        let bad = |reason| NoteError::BadKey {
            kind: "signing",
            reason,
        };
        let rest = s
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(bad("it does not start with PRIVATE+KEY+"))?;
        let (name, hash, key) = split_key(rest).ok_or(bad("expected PRIVATE+KEY+name+hash+key"))?;
        if !is_valid_name(name) {
            return Err(NoteError::BadName(name.to_string()));
        }
        let hash = parse_hash(hash).ok_or(bad("the key hash is not 8 hex digits"))?;
        let raw = BASE64
            .decode(key)
            .map_err(|_| bad("the key is not base64"))?;
        let seed: [u8; 32] = match raw.split_first() {
            Some((&ALG_ED25519, seed)) => seed
                .try_into()
                .map_err(|_| bad("an Ed25519 seed is 32 bytes"))?,
            _ => return Err(bad("only Ed25519 keys (algorithm 1) are supported")),
        };
        let parsed = SigningKey::from_seed(name, &seed);
        if parsed.hash != hash {
            return Err(bad("the key hash does not match the name and key"));
        }
        Ok(parsed)
    }

    /// The signing key string, `PRIVATE+KEY+...`: for writing the key file
    /// and nothing else.
    pub fn expose_encoded(&self) -> String {
        let mut seed = [0u8; 33];
        seed[0] = ALG_ED25519;
        seed[1..].copy_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.hash,
            BASE64.encode(seed)
        )
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            hash: self.hash,
            key: self.key.verifying_key(),
        }
    }

    /// Sign `text` (which must end in a newline and hold no control
    /// character but newline); returns the whole signed note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        if !is_valid_text(text) {
            return Err(NoteError::BadText);
        }
        let signature = self.key.sign(text.as_bytes());
        let mut sig = Vec::with_capacity(68);
        sig.extend_from_slice(&self.hash.to_be_bytes());
        sig.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            BASE64.encode(sig)
        ))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

fn is_valid_text(text: &str) -> bool {
    text.ends_with('\n') && !text.chars().any(|c| c < ' ' && c != '\n')
}

/// An Ed25519 verifier key with its name; `Display` is the key string.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    hash: u32,
    key: ed25519_dalek::VerifyingKey,
}

impl VerifierKey {
    /// Parse `<name>+<hash>+<base64>` (surrounding white space ignored).
    pub fn parse(s: &str) -> Result<VerifierKey, NoteError> {
        let bad = |reason| NoteError::BadKey {
            kind: "verifier",
            reason,
        };
        let s = s.trim();
        if s.starts_with("PRIVATE+KEY+") {
            return Err(bad(
                "this is a signing key; give the verifier key (name+hash+key)",
            ));
        }
        let (name, hash, key) = split_key(s).ok_or(bad("expected name+hash+key"))?;
        if !is_valid_name(name) {
            return Err(NoteError::BadName(name.to_string()));
        }
        let hash = parse_hash(hash).ok_or(bad("the key hash is not 8 hex digits"))?;
        let raw = BASE64
            .decode(key)
            .map_err(|_| bad("the key is not base64"))?;
        if key_hash(name, &raw) != hash {
            return Err(bad("the key hash does not match the name and key"));
        }
        let public: [u8; 32] = match raw.split_first() {
            Some((&ALG_ED25519, public)) => public
                .try_into()
                .map_err(|_| bad("an Ed25519 public key is 32 bytes"))?,
            _ => return Err(bad("only Ed25519 keys (algorithm 1) are supported")),
        };
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public)
            .map_err(|_| bad("not a valid Ed25519 public key"))?;
        Ok(VerifierKey {
            name: name.to_string(),
            hash,
            key,
        })
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<name>+<hash>`: names the key in messages.
    pub fn label(&self) -> String {
        format!("{}+{:08x}", self.name, self.hash)
    }

    /// Open a signed note: check its form strictly and that this key signed
    /// it; returns the text (ending in a newline). Signatures by other keys
    /// are ignored; one by this key that does not verify is an error.
    pub fn open<'a>(&self, note: &'a [u8]) -> Result<&'a str, NoteError> {
        let note = std::str::from_utf8(note).map_err(|_| NoteError::Malformed("not UTF-8"))?;
        if note.chars().any(|c| c < ' ' && c != '\n') {
            return Err(NoteError::Malformed(
                "a control character other than newline",
            ));
        }
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(NoteError::Malformed(
                "no signature lines, or they do not end in a newline",
            ));
        }
        let mut verified = false;
        for (i, line) in sigs.lines().enumerate() {
            if i >= MAX_SIGNATURES {
                return Err(NoteError::Malformed("too many signatures"));
            }
            let line = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
                "a signature line must start with '— '",
            ))?;
            let (name, b64) = line.split_once(' ').ok_or(NoteError::Malformed(
                "a signature line is '— name signature'",
            ))?;
            let sig = BASE64
                .decode(b64)
                .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
            if !is_valid_name(name) || sig.len() < 5 {
                return Err(NoteError::Malformed("a signature line is not valid"));
            }
            let hash = u32::from_be_bytes([sig[0], sig[1], sig[2], sig[3]]);
            if name != self.name || hash != self.hash {
                continue;
            }
            let ok = Signature::from_slice(&sig[4..])
                .and_then(|s| self.key.verify_strict(text.as_bytes(), &s))
                .is_ok();
            if !ok {
                return Err(NoteError::BadSignature(self.label()));
            }
            verified = true;
        }
        if verified {
            Ok(text)
        } else {
            Err(NoteError::NotSigned(self.label()))
        }
    }
}

impl fmt::Display for VerifierKey {
    /// `<name>+<hash>+<base64>`, the form every implementation reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.hash,
            BASE64.encode(encode_key(self.key.as_bytes()))
        )
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example key pair and note of the signed-note specification.
    const SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const NOTE: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n\
                        \n\
                        \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    #[test]
    fn matches_the_specification_example() {
        let signer = SigningKey::parse(SKEY).unwrap();
        assert_eq!(signer.verifier().to_string(), VKEY);
        assert_eq!(signer.expose_encoded(), SKEY);
        // Ed25519 is deterministic: the same key and text give the same note.
        assert_eq!(signer.sign(TEXT).unwrap(), NOTE);
        let verifier = VerifierKey::parse(VKEY).unwrap();
        assert_eq!(verifier.open(NOTE.as_bytes()).unwrap(), TEXT);
    }

    #[test]
    fn generated_keys_round_trip() {
        let key = SigningKey::generate("forge-sidecar.test").unwrap();
        let again = SigningKey::parse(&format!("{}\n", key.expose_encoded())).unwrap();
        let vkey = VerifierKey::parse(&key.verifier().to_string()).unwrap();
        assert_eq!(vkey, again.verifier());
        let note = again.sign("hello\n").unwrap();
        assert_eq!(vkey.open(note.as_bytes()).unwrap(), "hello\n");
        assert_eq!(format!("{key:?} {key}"), "*** ***");
    }

    #[test]
    fn an_altered_text_or_another_key_does_not_verify() {
        let verifier = VerifierKey::parse(VKEY).unwrap();
        let altered = NOTE.replacen("problem,", "problem!", 1);
        assert!(matches!(
            verifier.open(altered.as_bytes()),
            Err(NoteError::BadSignature(_))
        ));
        let other = SigningKey::generate("PeterNeumann").unwrap();
        let forged = other.sign(TEXT).unwrap();
        // Same name, different key hash: not a signature by this key.
        assert!(matches!(
            verifier.open(forged.as_bytes()),
            Err(NoteError::NotSigned(_))
        ));
        // A signature by this key's name and hash over other bytes.
        let sig_line = NOTE.rsplit_once("\n\n").unwrap().1;
        let spliced = format!("{}\n\n{sig_line}", "a different text\n");
        assert!(matches!(
            verifier.open(spliced.as_bytes()),
            Err(NoteError::BadSignature(_))
        ));
    }

    #[test]
    fn malformed_notes_and_keys_are_refused() {
        let verifier = VerifierKey::parse(VKEY).unwrap();
        for bad in [
            "no signatures\n".to_string(),
            NOTE.trim_end().to_string(),
            NOTE.replace('\u{2014}', "-"),
            NOTE.replacen("If", "If\r", 1),
            format!("{NOTE}garbage\n"),
        ] {
            assert!(
                matches!(verifier.open(bad.as_bytes()), Err(NoteError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(verifier.open(b"\xff\n\n").is_err());
        for bad in [
            "",
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3+notbase64!",
            SKEY,
        ] {
            assert!(VerifierKey::parse(bad).is_err(), "{bad}");
        }
        assert!(SigningKey::parse(VKEY).is_err());
        assert!(SigningKey::parse(&SKEY.replace("c74f20a3", "c74f20a4")).is_err());
        assert!(SigningKey::generate("a+b").is_err());
        assert!(matches!(
            SigningKey::parse(SKEY).unwrap().sign("no newline"),
            Err(NoteError::BadText)
        ));
    }
}
