//! Signing keys and tokens: short-lived JWT access tokens bound to one device, and
//! opaque refresh tokens stored only as SHA-256 hashes. The signing secret comes from
//! `NAS_SYNC_JWT_SECRET`, or is generated once and kept in the database.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::error::AppError;

/// Claims of an access token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: uuid::Uuid,
    pub username: String,
    pub tenant: String,
    pub role: String,
    pub store_id: Option<String>,
    /// The device this token is bound to.
    pub device_id: String,
    /// The device's token generation when this token was issued; a token whose
    /// generation is no longer the device's was ended (`auth::session`). Tokens issued
    /// before generations existed carry none: 0.
    #[serde(rename = "gen", default)]
    pub generation: i64,
    /// The user's Odoo user id when the token was issued (BridgeCore's smart-sync
    /// routes name users by it).
    #[serde(rename = "odoo_uid", default, skip_serializing_if = "Option::is_none")]
    pub odoo_user_id: Option<i64>,
    /// The user session of a BridgeCore tenant login (`auth::tenant`); such a token
    /// names no device (`device_id` is empty) and serves BridgeCore's routes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<uuid::Uuid>,
    /// `tenant` on a tenant login's token, with `tenant_id`: the claims BridgeCore's
    /// package checks before it trusts a stored token (`validateTenantToken`, which
    /// an app may run at start and which signs it out when they are missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    pub iat: i64,
    pub exp: i64,
}

impl Claims {
    /// Whom limits and fair shares count this token as: its device, or for a user
    /// session's token (no device) the user.
    pub fn client_key(&self) -> String {
        if self.device_id.is_empty() {
            format!("user:{}", self.sub)
        } else {
            self.device_id.clone()
        }
    }
}

/// The keys derived from the server secret.
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    cursor_key: Vec<u8>,
    pub access_ttl: Duration,
}

impl Keys {
    pub fn new(secret: &[u8], access_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(b"nas-sync cursor key v1");
        Keys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            cursor_key: mac.finalize().into_bytes().to_vec(),
            access_ttl,
        }
    }

    /// Signs an access token for these claims (iat/exp are set here).
    pub fn issue(&self, mut claims: Claims) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        claims.iat = now;
        claims.exp = now + self.access_ttl.as_secs() as i64;
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// Verifies signature and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, AppError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AppError::TokenExpired,
                _ => AppError::Unauthorized("The access token is not valid.".into()),
            })
    }

    /// MAC over cursor bytes, so clients cannot forge positions.
    pub fn cursor_mac(&self, data: &[u8]) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.cursor_key).expect("any key length");
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

/// A new random refresh token (what the client keeps).
pub fn new_refresh_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// What the server keeps of a refresh token.
pub fn hash_refresh_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The configured secret, or the one kept in the database (generated on first use).
pub async fn load_secret(pool: &PgPool, configured: Option<&str>) -> anyhow::Result<Vec<u8>> {
    if let Some(s) = configured {
        return Ok(s.as_bytes().to_vec());
    }
    let generated = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 48]>());
    // Two instances starting at once agree: the first insert wins, both read it back.
    sqlx::query("INSERT INTO server_meta (key, value) VALUES ('jwt_secret', $1) ON CONFLICT (key) DO NOTHING")
        .bind(&generated)
        .execute(pool)
        .await?;
    let secret: String =
        sqlx::query_scalar("SELECT value FROM server_meta WHERE key = 'jwt_secret'")
            .fetch_one(pool)
            .await?;
    Ok(secret.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            sub: uuid::Uuid::new_v4(),
            username: "u".into(),
            tenant: "default".into(),
            role: "store".into(),
            store_id: Some("s1".into()),
            device_id: "dev-1".into(),
            generation: 0,
            odoo_user_id: None,
            sid: None,
            user_type: None,
            tenant_id: None,
            iat: 0,
            exp: 0,
        }
    }

    #[test]
    fn issued_tokens_verify_and_tampered_ones_do_not() {
        let keys = Keys::new(b"0123456789abcdef0123", Duration::from_secs(60));
        let t = keys.issue(claims()).unwrap();
        assert_eq!(keys.verify(&t).unwrap().device_id, "dev-1");
        let other = Keys::new(b"another-secret-entirely", Duration::from_secs(60));
        assert!(matches!(other.verify(&t), Err(AppError::Unauthorized(_))));
        assert!(matches!(
            keys.verify("garbage"),
            Err(AppError::Unauthorized(_))
        ));
    }

    #[test]
    fn expired_tokens_say_so() {
        let keys = Keys::new(b"0123456789abcdef0123", Duration::from_secs(60));
        let mut c = claims();
        c.iat = 1;
        c.exp = chrono::Utc::now().timestamp() - 3600;
        let t = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &c, &keys.encoding).unwrap();
        assert!(matches!(keys.verify(&t), Err(AppError::TokenExpired)));
    }
}
