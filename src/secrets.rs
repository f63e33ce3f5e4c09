//! Secrets at rest: values the server must read back later (Odoo API keys) are sealed
//! with XChaCha20-Poly1305 under a key derived from `NAS_SYNC_SECRET_KEY`, so the
//! database, its dumps and its backups carry no usable secret.
//!
//! - Key: HKDF-SHA256 over the secret key (at least 32 characters), with a fixed salt
//!   and a purpose label; the secret key itself is never stored.
//! - Sealed value: `[version 1][24-byte random nonce][ciphertext + 16-byte tag]`. The
//!   first byte lets the format change later while old values still open.
//! - The caller's context (which table, column and row the value belongs to) and the
//!   version byte are authenticated with it: a sealed value copied to another row, or
//!   altered in any byte, does not open. Neither does one sealed under another secret
//!   key, and that is reported as such, never as a panic.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;

/// The shortest secret key accepted.
pub const MIN_KEY_CHARS: usize = 32;
/// The first byte of every value sealed by this version.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// HKDF's salt and purpose label: changing either changes every derived key.
const SALT: &[u8] = b"nas-sync secrets at rest";
const INFO: &[u8] = b"nas-sync v1 XChaCha20-Poly1305 sealing key";

/// Why a secret could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "NAS_SYNC_SECRET_KEY must be at least {MIN_KEY_CHARS} characters (it has {0}); \
         generate one with `openssl rand -hex 32`"
    )]
    TooShort(usize),
    #[error("the sealed value has format version {0}, which this server does not know")]
    UnknownFormat(u8),
    #[error("the sealed value is damaged (too short or not text)")]
    Damaged,
    #[error("it was sealed under another secret key (or altered)")]
    WrongKey,
    #[error("the value is too long to seal")]
    TooLong,
}

/// Seals and opens values under the key derived from the server's secret key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

/// Never prints the key.
impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<redacted>)")
    }
}

impl SecretBox {
    /// Derives the sealing key from `secret_key` (at least [`MIN_KEY_CHARS`]).
    pub fn new(secret_key: &str) -> Result<SecretBox, SecretError> {
        let chars = secret_key.chars().count();
        if chars < MIN_KEY_CHARS {
            return Err(SecretError::TooShort(chars));
        }
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(SALT), secret_key.as_bytes())
            .expand(INFO, &mut key)
            .map_err(|_| SecretError::TooLong)?;
        let cipher = XChaCha20Poly1305::new_from_slice(&key).map_err(|_| SecretError::TooLong);
        key.fill(0);
        Ok(SecretBox { cipher: cipher? })
    }

    /// `plaintext` sealed for `context`, under a fresh random nonce.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, SecretError> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let aad = aad(context);
        let sealed = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::TooLong)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The plaintext of a value `seal` made for the same `context`.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, SecretError> {
        match sealed.first() {
            Some(&VERSION) => {}
            Some(&other) => return Err(SecretError::UnknownFormat(other)),
            None => return Err(SecretError::Damaged),
        }
        if sealed.len() < 1 + NONCE_LEN + TAG_LEN {
            return Err(SecretError::Damaged);
        }
        let (nonce, body) = sealed[1..].split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| SecretError::Damaged)?;
        let aad = aad(context);
        self.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::WrongKey)
    }

    /// Like [`open`](Self::open), for a value that was text.
    pub fn open_text(&self, sealed: &[u8], context: &[u8]) -> Result<String, SecretError> {
        String::from_utf8(self.open(sealed, context)?).map_err(|_| SecretError::Damaged)
    }
}

/// What is authenticated with a value: the format version, then the caller's context.
fn aad(context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + context.len());
    aad.push(VERSION);
    aad.extend_from_slice(context);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_context() {
        let sb = SecretBox::new(KEY).unwrap();
        let sealed = sb.seal(b"odoo-api-key", b"row 1").unwrap();
        assert_eq!(sealed[0], VERSION);
        assert_eq!(sealed.len(), 1 + NONCE_LEN + "odoo-api-key".len() + TAG_LEN);
        assert!(!sealed.windows(12).any(|w| w == b"odoo-api-key"));
        assert_eq!(sb.open_text(&sealed, b"row 1").unwrap(), "odoo-api-key");
        // A fresh nonce each time.
        assert_ne!(sb.seal(b"odoo-api-key", b"row 1").unwrap(), sealed);

        let other = SecretBox::new("another secret key, also long enough").unwrap();
        assert_eq!(other.open(&sealed, b"row 1"), Err(SecretError::WrongKey));
        assert_eq!(sb.open(&sealed, b"row 2"), Err(SecretError::WrongKey));
        for i in 1..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 1;
            assert_eq!(sb.open(&tampered, b"row 1"), Err(SecretError::WrongKey));
        }
    }

    #[test]
    fn bad_keys_and_values_are_errors_not_panics() {
        assert_eq!(
            SecretBox::new("short").unwrap_err(),
            SecretError::TooShort(5)
        );
        assert!(
            SecretBox::new(&KEY[1..])
                .unwrap_err()
                .to_string()
                .contains("at least 32")
        );
        let sb = SecretBox::new(KEY).unwrap();
        assert_eq!(sb.open(&[], b""), Err(SecretError::Damaged));
        assert_eq!(sb.open(&[VERSION, 1, 2], b""), Err(SecretError::Damaged));
        assert_eq!(sb.open(&[2; 64], b""), Err(SecretError::UnknownFormat(2)));
        assert!(!format!("{sb:?}").contains(KEY));
    }

    /// A value sealed by version 1 still opens: the derivation and the format are
    /// stable (changing them would lock every stored key out).
    #[test]
    fn values_sealed_by_version_1_open() {
        let sealed = hex(GOLDEN);
        let sb = SecretBox::new(KEY).unwrap();
        assert_eq!(
            sb.open_text(&sealed, b"odoo_connections.api_key:golden")
                .unwrap(),
            "bot-api-key"
        );
    }

    /// `bot-api-key` sealed for `odoo_connections.api_key:golden` under `KEY`.
    const GOLDEN: &str = "0155e2e1594daa219063f6c6ba9940d678725b17619f30973f48eb394b23dfbe8c\
                          70eb5a98c4c389473c4465995f936a2c243e8c";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
