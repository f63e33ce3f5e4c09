//! Server-side exceptions and how each protocol reports them
//! (`odoo/http.py` `serialize_exception`, `JsonRPCDispatcher.handle_error`,
//! `addons/rpc/controllers/json2.py` `Json2RpcDispatcher.handle_error`).

use serde_json::{Value, json};

/// The Python exception class raised server-side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    AccessDenied,
    AccessError,
    UserError,
    ValidationError,
    MissingError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    SerializationFailure,
    SessionExpired,
    /// `werkzeug.exceptions.NotFound`.
    NotFound,
    /// `werkzeug.exceptions.UnprocessableEntity`.
    Unprocessable,
    /// `werkzeug.exceptions.Unauthorized`.
    Unauthorized,
    /// `werkzeug.exceptions.BadRequest`.
    BadRequest,
}

#[derive(Clone, Debug)]
pub(crate) struct OdooError {
    pub(crate) kind: Kind,
    pub(crate) message: String,
}

pub(crate) type OResult<T> = Result<T, OdooError>;

impl OdooError {
    pub(crate) fn new(kind: Kind, message: impl Into<String>) -> OdooError {
        OdooError {
            kind,
            message: message.into(),
        }
    }
    pub(crate) fn value(message: impl Into<String>) -> OdooError {
        OdooError::new(Kind::ValueError, message)
    }
    pub(crate) fn type_error(message: impl Into<String>) -> OdooError {
        OdooError::new(Kind::TypeError, message)
    }
    pub(crate) fn validation(message: impl Into<String>) -> OdooError {
        OdooError::new(Kind::ValidationError, message)
    }
    pub(crate) fn missing(model: &str, ids: &[i64], uid: i64) -> OdooError {
        let ids = ids.iter().map(|i| format!("{i}, ")).collect::<String>();
        OdooError::new(
            Kind::MissingError,
            format!(
                "Record does not exist or has been deleted.\n(Record: {model}({ids}), User: {uid})"
            ),
        )
    }
    pub(crate) fn access_denied() -> OdooError {
        OdooError::new(Kind::AccessDenied, "Access Denied")
    }

    /// The dotted class name of `data.name` / the JSON-2 `name`.
    pub(crate) fn name(&self) -> &'static str {
        match self.kind {
            Kind::AccessDenied => "odoo.exceptions.AccessDenied",
            Kind::AccessError => "odoo.exceptions.AccessError",
            Kind::UserError => "odoo.exceptions.UserError",
            Kind::ValidationError => "odoo.exceptions.ValidationError",
            Kind::MissingError => "odoo.exceptions.MissingError",
            Kind::ValueError => "builtins.ValueError",
            Kind::TypeError => "builtins.TypeError",
            Kind::KeyError => "builtins.KeyError",
            Kind::IndexError => "builtins.IndexError",
            Kind::AttributeError => "builtins.AttributeError",
            Kind::SerializationFailure => "psycopg2.errors.SerializationFailure",
            Kind::SessionExpired => "odoo.http.SessionExpiredException",
            Kind::NotFound => "werkzeug.exceptions.NotFound",
            Kind::Unprocessable => "werkzeug.exceptions.UnprocessableEntity",
            Kind::Unauthorized => "werkzeug.exceptions.Unauthorized",
            Kind::BadRequest => "werkzeug.exceptions.BadRequest",
        }
    }

    /// HTTP status on JSON-2: werkzeug exceptions carry their code, Odoo's
    /// `UserError` family its `http_status`, anything else is a 500.
    pub(crate) fn json2_status(&self) -> u16 {
        match self.kind {
            Kind::AccessDenied | Kind::AccessError | Kind::SessionExpired => 403,
            Kind::UserError | Kind::ValidationError | Kind::Unprocessable => 422,
            Kind::MissingError | Kind::NotFound => 404,
            Kind::Unauthorized => 401,
            Kind::BadRequest => 400,
            Kind::ValueError
            | Kind::TypeError
            | Kind::KeyError
            | Kind::IndexError
            | Kind::AttributeError
            | Kind::SerializationFailure => 500,
        }
    }

    fn werkzeug_code(&self) -> Option<u16> {
        match self.kind {
            Kind::NotFound | Kind::Unprocessable | Kind::Unauthorized | Kind::BadRequest => {
                Some(self.json2_status())
            }
            _ => None,
        }
    }

    /// `serialize_exception(exc)`: `{name, message, arguments, context, debug}`.
    pub(crate) fn serialize(&self) -> Value {
        let arguments = match self.werkzeug_code() {
            Some(code) => json!([self.message, code]),
            None => json!([self.message]),
        };
        let debug = if self.kind == Kind::AccessDenied {
            // AccessDenied strips its traceback.
            String::new()
        } else {
            format!(
                "Traceback (most recent call last):\n  File \"/opt/odoo/odoo/http.py\", \
                 line 1, in _serve_db\n{}: {}\n",
                self.name(),
                self.message
            )
        };
        json!({
            "name": self.name(),
            "message": self.message,
            "arguments": arguments,
            "context": {},
            "debug": debug,
        })
    }

    /// The JSON-RPC `error` member. `code` is 200 before Odoo 19 and 0 from
    /// 19 on; 100 for an expired session, 404 for NotFound.
    pub(crate) fn jsonrpc_error(&self, version: u32) -> Value {
        let (code, message) = match self.kind {
            Kind::SessionExpired => (100, "Odoo Session Expired"),
            Kind::NotFound => (404, "404: Not Found"),
            _ if version >= 19 => (0, "Odoo Server Error"),
            _ => (200, "Odoo Server Error"),
        };
        json!({"code": code, "message": message, "data": self.serialize()})
    }
}
