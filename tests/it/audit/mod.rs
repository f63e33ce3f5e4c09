//! The audit trail (`audit`): every writer recorded with its origin, and the chain's
//! verification naming each kind of tampering.

mod api;
mod trail;
