//! The pull cursor: an opaque, signed position in the change log. It carries the
//! database epoch (a restored database gets a new one, so old cursors answer
//! `RESYNC_REQUIRED`), the (xid, seq) position, and a hash of the scope it was issued
//! for (tenant, store, table set). Clients cannot forge or edit one: it is MACed.
//!
//! A cursor of a first sync still walking the tables (`pull::walk`) also says where
//! the walk is: the table and the last id sent. Its position is then where the change
//! log takes over once the walk ends (just below the horizon of the walk's first page).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::token::Keys;
use crate::error::AppError;

const VERSION: u8 = 1;
/// A walking cursor: the version 1 body, then the walk.
const VERSION_WALK: u8 = 2;
const BODY_LEN: usize = 1 + 16 + 8 + 8 + 8;
/// Walk: a flag (an id follows), the id, the table name's length, the name.
const WALK_FIXED: usize = 1 + 16 + 1;
/// Longest table name PostgreSQL allows.
const NAME_MAX: usize = 63;
const MAC_LEN: usize = 16;

/// A position in the change log: everything at or before it has been delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub xid: u64,
    pub seq: i64,
}

impl Position {
    pub const START: Position = Position { xid: 0, seq: 0 };

    /// The position just before transaction `xid`: every entry of `xid` or later
    /// comes after it.
    pub fn before_xid(xid: u64) -> Position {
        Position {
            xid: xid.saturating_sub(1),
            seq: i64::MAX,
        }
    }
}

/// A decoded cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub epoch: Uuid,
    pub position: Position,
    pub scope: u64,
    /// Where a first sync's walk of the tables stands; `None` once it reads the log.
    pub walk: Option<Walk>,
}

/// A first sync's place in its walk of the tables, in name order, each by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Walk {
    /// The table being walked.
    pub table: String,
    /// The last id sent from it; `None`: from its start.
    pub after: Option<Uuid>,
}

/// Hash of what a cursor is valid for: tenant, store and the sorted table set.
pub fn scope_hash(tenant: &str, store: Option<&str>, tables: &[&str]) -> u64 {
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    h.update([0]);
    h.update(store.unwrap_or("").as_bytes());
    h.update([0]);
    let mut sorted: Vec<&str> = tables.to_vec();
    sorted.sort_unstable();
    for t in sorted {
        h.update(t.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

impl Cursor {
    pub fn encode(&self, keys: &Keys) -> String {
        let mut buf = Vec::with_capacity(BODY_LEN + WALK_FIXED + NAME_MAX + MAC_LEN);
        buf.push(match self.walk {
            None => VERSION,
            Some(_) => VERSION_WALK,
        });
        buf.extend_from_slice(self.epoch.as_bytes());
        buf.extend_from_slice(&self.position.xid.to_be_bytes());
        buf.extend_from_slice(&self.position.seq.to_be_bytes());
        buf.extend_from_slice(&self.scope.to_be_bytes());
        if let Some(w) = &self.walk {
            buf.push(u8::from(w.after.is_some()));
            buf.extend_from_slice(w.after.unwrap_or_default().as_bytes());
            // Table names come from the registry: PostgreSQL identifiers, at most 63 bytes.
            let name = &w.table.as_bytes()[..w.table.len().min(NAME_MAX)];
            buf.push(name.len() as u8);
            buf.extend_from_slice(name);
        }
        let mac = keys.cursor_mac(&buf);
        buf.extend_from_slice(&mac[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(buf)
    }

    /// Decodes and authenticates a cursor; anything else is `INVALID_SYNC_TOKEN`.
    pub fn decode(s: &str, keys: &Keys) -> Result<Cursor, AppError> {
        let invalid = || AppError::InvalidSyncToken("it was not issued by this server".into());
        if s.len() > 256 {
            return Err(invalid());
        }
        let buf = URL_SAFE_NO_PAD.decode(s.trim()).map_err(|_| invalid())?;
        if buf.len() < BODY_LEN + MAC_LEN {
            return Err(invalid());
        }
        let (body, mac) = buf.split_at(buf.len() - MAC_LEN);
        let walking = match body[0] {
            VERSION if body.len() == BODY_LEN => false,
            VERSION_WALK if body.len() >= BODY_LEN + WALK_FIXED => true,
            _ => return Err(invalid()),
        };
        let expected = keys.cursor_mac(body);
        // Constant-time comparison.
        let diff = expected[..MAC_LEN]
            .iter()
            .zip(mac)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(invalid());
        }
        let u64_at = |i: usize| u64::from_be_bytes(body[i..i + 8].try_into().expect("8 bytes"));
        let walk = match walking {
            false => None,
            true => {
                let w = &body[BODY_LEN..];
                let len = w[WALK_FIXED - 1] as usize;
                if w.len() != WALK_FIXED + len || w[0] > 1 {
                    return Err(invalid());
                }
                let id = Uuid::from_slice(&w[1..17]).map_err(|_| invalid())?;
                let table = std::str::from_utf8(&w[WALK_FIXED..])
                    .map_err(|_| invalid())?
                    .to_string();
                Some(Walk {
                    table,
                    after: (w[0] == 1).then_some(id),
                })
            }
        };
        Ok(Cursor {
            epoch: Uuid::from_slice(&body[1..17]).map_err(|_| invalid())?,
            position: Position {
                xid: u64_at(17),
                seq: u64_at(25) as i64,
            },
            scope: u64_at(33),
            walk,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn keys() -> Keys {
        Keys::new(b"0123456789abcdef-cursor", Duration::from_secs(60))
    }

    #[test]
    fn round_trip_and_tamper_detection() {
        let k = keys();
        let c = Cursor {
            epoch: Uuid::new_v4(),
            position: Position {
                xid: 12345,
                seq: 678,
            },
            scope: scope_hash("default", Some("s1"), &["b", "a"]),
            walk: None,
        };
        let s = c.encode(&k);
        assert_eq!(Cursor::decode(&s, &k).unwrap(), c);
        for after in [None, Some(Uuid::new_v4())] {
            let walking = Cursor {
                walk: Some(Walk {
                    table: "kpi_data".into(),
                    after,
                }),
                ..c.clone()
            };
            let w = walking.encode(&k);
            assert_eq!(Cursor::decode(&w, &k).unwrap(), walking);
            let mut bytes = URL_SAFE_NO_PAD.decode(&w).unwrap();
            let at = bytes.len() - MAC_LEN - 2;
            bytes[at] ^= 1;
            assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode(&bytes), &k).is_err());
        }

        let mut bytes = URL_SAFE_NO_PAD.decode(&s).unwrap();
        bytes[20] ^= 1;
        let tampered = URL_SAFE_NO_PAD.encode(&bytes);
        assert!(matches!(
            Cursor::decode(&tampered, &k),
            Err(AppError::InvalidSyncToken(_))
        ));
        assert!(matches!(
            Cursor::decode("not-a-cursor", &k),
            Err(AppError::InvalidSyncToken(_))
        ));
        assert!(matches!(
            Cursor::decode("", &k),
            Err(AppError::InvalidSyncToken(_))
        ));
        let other = Keys::new(b"another-secret-entirely", Duration::from_secs(60));
        assert!(matches!(
            Cursor::decode(&s, &other),
            Err(AppError::InvalidSyncToken(_))
        ));
    }

    #[test]
    fn scope_ignores_table_order_but_not_store() {
        assert_eq!(
            scope_hash("t", None, &["a", "b"]),
            scope_hash("t", None, &["b", "a"])
        );
        assert_ne!(
            scope_hash("t", Some("s1"), &["a"]),
            scope_hash("t", Some("s2"), &["a"])
        );
        assert_ne!(
            scope_hash("t", None, &["a"]),
            scope_hash("t", None, &["a", "b"])
        );
    }
}
