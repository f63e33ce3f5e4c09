//! "Users": the tenant's users, "Add user" (`username`, `password`, `role`,
//! `store`, and for apps built on BridgeCore `email` and `odoo_user_id`), disable,
//! enable, reset password, and set email and Odoo user (`auth::manage`, as
//! `/api/v1/admin/users/...`).

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::{done, failed, posted};
use crate::auth::identity::IdentityChange;
use crate::auth::manage::{self, NewUser};
use crate::console::layout::{self, csrf_field, segment, when};
use crate::console::session::Console;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// `GET /admin/users`.
pub async fn page(State(state): State<AppState>, console: Console) -> Response {
    let users = match manage::list_users(&state.pool, &console.who).await {
        Ok(u) => u,
        Err(e) => return failed(&e),
    };
    let body = html! {
        div.table-wrap {
        table {
            thead { tr { th { "Username" } th { "Role" } th { "Store" } th { "Email" } th { "Odoo user" } th { "Since" } th { "State" } th { "Actions" } } }
            tbody {
                @for u in &users {
                    @let path = segment(&u.username);
                    tr data-user=(u.username) {
                        td data-label="Username" { strong { (u.username) } }
                        td data-label="Role" { (u.role) }
                        td data-label="Store" { (u.store_id.clone().unwrap_or_default()) }
                        td data-label="Email" { (u.email.clone().unwrap_or_default()) }
                        td data-label="Odoo user" { (u.odoo_user_id.map(|i| i.to_string()).unwrap_or_default()) }
                        td data-label="Since" { (when(Some(u.created_at))) }
                        td data-label="State" {
                            @if u.disabled_at.is_some() { span.badge.bad { "disabled" } }
                            @else { span.badge.good { "enabled" } }
                        }
                        td data-label="Actions" {
                            @if u.disabled_at.is_some() {
                                (layout::action(&console, &format!("/admin/users/{path}/enable"), "Enable", ""))
                            } @else if u.username != console.who.username {
                                (layout::action(&console, &format!("/admin/users/{path}/disable"), "Disable", "danger"))
                            }
                            details.reset {
                                summary { "Reset password" }
                                form.stack method="post" action=(format!("/admin/users/{path}/password")) {
                                    (csrf_field(&console))
                                    label for=(format!("pw-{}", u.username)) { "New password for " (u.username) }
                                    input id=(format!("pw-{}", u.username)) name="password" type="password"
                                        autocomplete="new-password" minlength="8" required;
                                    button type="submit" { "Set password" }
                                }
                            }
                            details.identity {
                                summary { "Email and Odoo user" }
                                form.stack method="post" action=(format!("/admin/users/{path}/identity")) {
                                    (csrf_field(&console))
                                    label for=(format!("email-{}", u.username)) { "Email (empty: none)" }
                                    input id=(format!("email-{}", u.username)) name="email" type="email"
                                        autocomplete="off" maxlength="254" value=(u.email.clone().unwrap_or_default());
                                    label for=(format!("odoo-{}", u.username)) { "Odoo user id (empty: none)" }
                                    input id=(format!("odoo-{}", u.username)) name="odoo_user_id" type="number"
                                        min="1" value=(u.odoo_user_id.map(|i| i.to_string()).unwrap_or_default());
                                    button type="submit" { "Save" }
                                }
                            }
                        }
                    }
                }
            }
        }
        }
        section.card {
            h2 { "Add user" }
            form.stack #add-user method="post" action="/admin/users" {
                (csrf_field(&console))
                label for="new-username" { "Username" }
                input #new-username name="username" type="text" autocomplete="off" required maxlength="128";
                label for="new-password" { "Password (at least 8 characters)" }
                input #new-password name="password" type="password" autocomplete="new-password" minlength="8" required;
                label for="new-role" { "Role" }
                select #new-role name="role" {
                    option value="store" selected { "store" }
                    option value="manager" { "manager" }
                }
                label for="new-store" { "Store (for store users)" }
                input #new-store name="store" type="text" autocomplete="off" maxlength="128";
                label for="new-email" { "Email (optional: BridgeCore's login)" }
                input #new-email name="email" type="email" autocomplete="off" maxlength="254";
                label for="new-odoo-user" { "Odoo user id (optional: BridgeCore's smart sync)" }
                input #new-odoo-user name="odoo_user_id" type="number" min="1";
                button type="submit" { "Add user" }
            }
        }
    };
    layout::page(&console, "Users", &body)
}

/// `POST /admin/users`: "Add user".
pub async fn add(
    State(state): State<AppState>,
    console: Console,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let fields = match posted(&console, form) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let field = |name: &str| fields.get(name).unwrap_or_default().to_string();
    let (email, odoo_user_id) = match identity_fields(&fields) {
        Ok(i) => i,
        Err(e) => return done(&state, &console, Err(e), "/admin/users").await,
    };
    let new = NewUser {
        username: field("username"),
        password: field("password"),
        role: field("role"),
        store: fields.get("store").map(ToString::to_string),
        email,
        odoo_user_id,
    };
    let outcome = manage::add_user(&state.pool, &console.who, new)
        .await
        .map(|u| format!("User {} added ({}).", u.username, u.role));
    done(&state, &console, outcome, "/admin/users").await
}

/// `POST /admin/users/{username}/disable|enable|password`.
pub async fn act(
    State(state): State<AppState>,
    console: Console,
    Path((username, action)): Path<(String, String)>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let fields = match posted(&console, form) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let pool = &state.pool;
    let who = &console.who;
    let outcome = match action.as_str() {
        "disable" => manage::set_disabled(pool, who, &username, true)
            .await
            .map(|()| format!("User {username} disabled; its devices were signed out.")),
        "enable" => manage::set_disabled(pool, who, &username, false)
            .await
            .map(|()| format!("User {username} enabled.")),
        "password" => {
            let password = fields.get("password").unwrap_or_default();
            manage::set_password(pool, who, &username, password)
                .await
                .map(|()| format!("New password set for {username}; its devices log in again."))
        }
        "identity" => match identity_fields(&fields) {
            Ok((email, odoo_user_id)) => {
                let change = IdentityChange {
                    email: Some(email),
                    odoo_user_id: Some(odoo_user_id),
                };
                manage::set_identity(pool, who, &username, change)
                    .await
                    .map(|_| format!("Email and Odoo user of {username} saved."))
            }
            Err(e) => Err(e),
        },
        _ => return layout::problem(StatusCode::NOT_FOUND, "No such action."),
    };
    if outcome.is_ok() && action != "enable" && action != "identity" {
        state.sync.sessions.forget(&who.tenant, None);
    }
    done(&state, &console, outcome, "/admin/users").await
}

/// The form's email and Odoo user id; an empty field is none.
fn identity_fields(fields: &crate::console::Fields) -> AppResult<(Option<String>, Option<i64>)> {
    let email = fields
        .get("email")
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(ToString::to_string);
    let odoo_user_id = match fields.get("odoo_user_id").map(str::trim) {
        None | Some("") => None,
        Some(v) => Some(
            v.parse::<i64>()
                .map_err(|_| AppError::validation("odoo_user_id", "must be a whole number"))?,
        ),
    };
    Ok((email, odoo_user_id))
}
