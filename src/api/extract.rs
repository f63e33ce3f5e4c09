//! `Json` and `Query` extractors whose rejections are the contract's errors:
//! malformed JSON and wrong types are `VALIDATION_FAILED` naming the field (so is a
//! query value with a NUL character), oversized bodies `PAYLOAD_TOO_LARGE`.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::AppError;

/// A JSON request body.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge(
                    "The request body is larger than the server accepts.".into(),
                )
            } else {
                AppError::validation(
                    "body",
                    "the request body could not be read (bad gzip encoding?)",
                )
            }
        })?;
        parse_json(&bytes).map(Json)
    }
}

/// A JSON body that may be absent (empty): `None`. A body that is there must parse.
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let empty = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .is_some_and(|v| v == "0");
        if empty {
            return Ok(OptionalJson(None));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| AppError::validation("body", "the request body could not be read"))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        parse_json(&bytes).map(|v| OptionalJson(Some(v)))
    }
}

/// Parses JSON, naming the offending field on type errors.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(AppError::validation("body", "a JSON body is required"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return AppError::validation("body", format!("malformed JSON: {inner}"));
        }
        let message = inner.to_string();
        // serde reports a missing field at its parent; name the field itself.
        let field = match message
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            Some(name) if path == "." => name.to_string(),
            Some(name) => format!("{path}.{name}"),
            None if path == "." => "body".to_string(),
            None => path,
        };
        AppError::validation(field, message)
    })?;
    // Anything after the JSON value (a second object, stray text) is malformed too.
    de.end()
        .map_err(|e| AppError::validation("body", format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// A query string.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let q = axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| AppError::validation("query", e.body_text()))?;
        // PostgreSQL text cannot hold NUL: refuse it here, naming the parameter,
        // rather than as a database error.
        if let Ok(pairs) = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            && let Some((name, _)) = pairs
                .0
                .iter()
                .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(AppError::validation(
                name.replace('\0', ""),
                "text may not contain NUL characters",
            ));
        }
        Ok(Query(q.0))
    }
}
