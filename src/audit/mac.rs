//! Seals: HMAC-SHA256 under a key derived from the server's secret, over the previous
//! entry's seal and the entry's content in a fixed, length-prefixed encoding (so no
//! two different entries encode alike).

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use uuid::Uuid;

/// The seal before a tenant's first entry.
pub const GENESIS: [u8; 32] = [0; 32];

/// What an entry's seal covers: every column of `audit_log` but the seals.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Entry {
    pub tenant_id: String,
    pub seq: i64,
    pub history_id: i64,
    pub table_name: String,
    pub row_id: Uuid,
    pub version: Option<i64>,
    pub store_id: Option<String>,
    pub op: String,
    pub changed: Value,
    pub server_time: DateTime<Utc>,
    pub device_time: Option<DateTime<Utc>>,
    pub user_name: Option<String>,
    pub device_id: Option<String>,
    pub role: Option<String>,
    pub origin: String,
}

/// The key entries are sealed with.
#[derive(Clone)]
pub struct SealKey(Vec<u8>);

impl SealKey {
    /// Derived from the server's secret (NAS_SYNC_JWT_SECRET): a database dump alone
    /// does not carry it, so whoever can write the database cannot forge a seal.
    pub fn from_secret(secret: &[u8]) -> SealKey {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(b"nas-sync audit seal v1");
        SealKey(mac.finalize().into_bytes().to_vec())
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length")
    }

    /// The seal of `entry` following `prev`.
    pub fn seal(&self, prev: &[u8], entry: &Entry) -> Vec<u8> {
        let mut mac = self.mac();
        field(&mut mac, Some(prev));
        field(&mut mac, Some(entry.tenant_id.as_bytes()));
        field(&mut mac, Some(&entry.seq.to_be_bytes()));
        field(&mut mac, Some(&entry.history_id.to_be_bytes()));
        field(&mut mac, Some(entry.table_name.as_bytes()));
        field(&mut mac, Some(entry.row_id.as_bytes()));
        field(
            &mut mac,
            entry.version.map(i64::to_be_bytes).as_ref().map(|b| &b[..]),
        );
        field(&mut mac, Some(entry.op.as_bytes()));
        // serde_json's maps are sorted: the same value always writes the same text.
        field(&mut mac, Some(entry.changed.to_string().as_bytes()));
        field(&mut mac, Some(time(&entry.server_time).as_bytes()));
        field(
            &mut mac,
            entry
                .device_time
                .as_ref()
                .map(time)
                .as_deref()
                .map(str::as_bytes),
        );
        for s in [&entry.user_name, &entry.device_id, &entry.role] {
            field(&mut mac, s.as_deref().map(str::as_bytes));
        }
        field(&mut mac, Some(entry.origin.as_bytes()));
        mac.finalize().into_bytes().to_vec()
    }

    /// The signature of a checkpoint: tenant `tenant`'s chain continues at `seq`,
    /// following `prev_seal`, after the entries before it were pruned.
    pub fn sign_checkpoint(&self, tenant: &str, seq: i64, prev_seal: &[u8]) -> Vec<u8> {
        let mut mac = self.mac();
        field(&mut mac, Some(b"checkpoint"));
        field(&mut mac, Some(tenant.as_bytes()));
        field(&mut mac, Some(&seq.to_be_bytes()));
        field(&mut mac, Some(prev_seal));
        mac.finalize().into_bytes().to_vec()
    }
}

/// Microseconds, UTC: what PostgreSQL stores, so a value read back encodes alike.
fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn field(mac: &mut Hmac<Sha256>, bytes: Option<&[u8]>) {
    match bytes {
        None => mac.update(&u64::MAX.to_be_bytes()),
        Some(b) => {
            mac.update(&(b.len() as u64).to_be_bytes());
            mac.update(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry() -> Entry {
        Entry {
            tenant_id: "t".into(),
            seq: 1,
            history_id: 10,
            table_name: "forms".into(),
            row_id: Uuid::nil(),
            version: Some(1),
            store_id: None,
            op: "insert".into(),
            changed: json!({"title": [null, "A"]}),
            server_time: DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap(),
            device_time: None,
            user_name: Some("boss".into()),
            device_id: None,
            role: None,
            origin: "push".into(),
        }
    }

    #[test]
    fn every_field_and_the_previous_seal_count() {
        let key = SealKey::from_secret(b"secret");
        let base = key.seal(&GENESIS, &entry());
        assert_eq!(base, key.seal(&GENESIS, &entry()));
        assert_ne!(base, key.seal(&[1; 32], &entry()));
        let mut e = entry();
        e.changed = json!({"title": [null, "B"]});
        assert_ne!(base, key.seal(&GENESIS, &e));
        // A value moved from one field to the next encodes differently.
        let mut e = entry();
        e.user_name = None;
        e.device_id = Some("boss".into());
        assert_ne!(base, key.seal(&GENESIS, &e));
        assert_ne!(
            base,
            SealKey::from_secret(b"other").seal(&GENESIS, &entry())
        );
    }
}
