//! Sign-in and sign-out. Sign-in takes `username` and `password` with the API's
//! password check (`auth::service::check_password`) and login limits
//! (`Limits::check_login`); only managers get a session, store users are told the
//! console is not for them.

use axum::extract::rejection::FormRejection;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, RequestExt};
use maud::html;

use super::posted;
use crate::api::middleware::client_ip;
use crate::auth::Role;
use crate::auth::service::check_password;
use crate::console::session::{self, Console, PRE_COOKIE};
use crate::console::{Fields, csrf, layout};
use crate::error::AppError;
use crate::state::AppState;

/// The sign-in form, with a fresh sign-in CSRF cookie.
fn render(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    message: Option<&str>,
) -> Response {
    let token = session::random_token();
    let secure = session::secure(&state.config, headers);
    let mut response = layout::bare(
        status,
        "Sign in",
        &html! {
            @if let Some(m) = message {
                p.error role="alert" { (m) }
            }
            form.stack method="post" action="/admin/login" {
                input type="hidden" name="csrf" value=(token);
                label for="username" { "Username" }
                input #username name="username" type="text" autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input #password name="password" type="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
            p.muted { "For managers. Store users sign in on their devices." }
        },
    );
    if let Ok(v) = session::set_cookie(PRE_COOKIE, &token, 3600, secure).parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// `GET /admin/login`.
pub async fn form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    render(&state, &headers, StatusCode::OK, None)
}

/// `POST /admin/login`.
pub async fn submit(State(state): State<AppState>, req: Request) -> Response {
    let ip = client_ip(req.extensions());
    let headers = req.headers().clone();
    let form: Result<Form<Vec<(String, String)>>, FormRejection> = req.extract().await;
    let fields = match Fields::from(form) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let expected = session::cookie(&headers, PRE_COOKIE).unwrap_or_default();
    if !csrf::matches(&expected, fields.get("csrf")) {
        return csrf::refused();
    }
    let username = fields.get("username").unwrap_or_default().to_string();
    let password = fields.get("password").unwrap_or_default().to_string();
    let refuse = |status, message: &str| render(&state, &headers, status, Some(message));
    if let Some(limits) = &state.limits
        && let Err(e) = limits.check_login(ip, &username)
    {
        let mut r = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-in attempts. Wait a minute and try again.",
        );
        if let AppError::RateLimited { retry_after_secs } = e
            && let Ok(v) = retry_after_secs.to_string().parse()
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    if let Some(limits) = &state.limits {
        limits.login_wait(&username).await;
    }
    let checked = check_password(&state.pool, &username, password).await;
    if let Some(limits) = &state.limits
        && matches!(checked, Ok(_) | Err(AppError::InvalidCredentials))
    {
        limits.login_outcome(&username, checked.is_ok());
    }
    let user = match checked {
        Ok(u) => u,
        Err(AppError::InvalidCredentials) => {
            return refuse(StatusCode::UNAUTHORIZED, "Wrong username or password.");
        }
        Err(AppError::UserDisabled) => {
            return refuse(StatusCode::UNAUTHORIZED, "This user is disabled.");
        }
        Err(e) => return super::failed(&e),
    };
    if Role::parse(&user.role) != Some(Role::Manager) {
        tracing::info!(username, "admin console sign-in refused: not a manager");
        return refuse(
            StatusCode::FORBIDDEN,
            "Store users cannot sign in to the admin console: it is for managers. Use the app on your device.",
        );
    }
    let token = match session::create(&state.pool, &state.config, &user).await {
        Ok(t) => t,
        Err(e) => return super::failed(&AppError::from(e)),
    };
    let secure = session::secure(&state.config, &headers);
    let ttl = state.config.admin_session_ttl.as_secs();
    let mut response = Redirect::to("/admin").into_response();
    for cookie in [
        session::set_cookie(session::COOKIE, &token, ttl, secure),
        session::set_cookie(PRE_COOKIE, "", 0, secure),
    ] {
        if let Ok(v) = cookie.parse() {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// `POST /admin/logout`: "Sign out".
pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    console: Console,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    if let Err(r) = posted(&console, form) {
        return r.into_response();
    }
    if let Err(e) = session::end(&state.pool, &console).await {
        return super::failed(&AppError::from(e));
    }
    let mut response = Redirect::to("/admin/login").into_response();
    let secure = session::secure(&state.config, &headers);
    if let Ok(v) = session::set_cookie(session::COOKIE, "", 0, secure).parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}
