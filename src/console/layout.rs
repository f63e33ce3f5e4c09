//! The console's page shell (`maud`): head with the viewport and the stylesheet, the
//! navigation with the section names of docs/contract.md §10, "Sign out", the one-shot
//! message; plus the small pieces every page uses (forms with the CSRF token, times).

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::session::Console;

/// The pages, as the navigation names them, and their paths.
pub const PAGES: [(&str, &str); 6] = [
    ("Overview", "/admin"),
    ("Devices", "/admin/devices"),
    ("Users", "/admin/users"),
    ("Conflicts", "/admin/conflicts"),
    ("History", "/admin/history"),
    ("Odoo", "/admin/odoo"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="same-origin";
            title { (title) " · nas-sync" }
            link rel="stylesheet" href=(super::CSS_PATH);
            link rel="icon" href="data:,";
        }
    }
}

/// A signed-in page: `title` is one of `PAGES`.
pub fn page(console: &Console, title: &str, body: &Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    span.brand { "nas-sync" }
                    nav aria-label="Sections" {
                        @for (name, path) in PAGES {
                            @if name == title {
                                a href=(path) aria-current="page" { (name) }
                            } @else {
                                a href=(path) { (name) }
                            }
                        }
                    }
                    form.signout method="post" action="/admin/logout" {
                        (csrf_field(console))
                        span.who { (console.who.username) " · " (console.who.tenant) }
                        button type="submit" { "Sign out" }
                    }
                }
                main {
                    h1 { (title) }
                    @if let Some(message) = &console.flash {
                        p.flash role="status" { (message) }
                    }
                    (body)
                }
            }
        }
    };
    Html(markup.into_string()).into_response()
}

/// A page for someone not signed in (sign-in, errors).
pub fn bare(status: StatusCode, title: &str, body: &Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                main.narrow {
                    p.brand { "nas-sync admin" }
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    (status, Html(markup.into_string())).into_response()
}

/// An error page with a sentence and a way back.
pub fn problem(status: StatusCode, message: &str) -> Response {
    bare(
        status,
        "Refused",
        &html! {
            p.error role="alert" { (message) }
            p { a href="/admin" { "Back to the console" } }
        },
    )
}

/// The hidden CSRF field every form carries.
pub fn csrf_field(console: &Console) -> Markup {
    html! { input type="hidden" name="csrf" value=(console.csrf); }
}

/// A form with one button posting to `action`; `confirm` is the button's text.
pub fn action(console: &Console, action: &str, label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf_field(console))
            button type="submit" class=(class) { (label) }
        }
    }
}

/// A time, in UTC, to the minute; "never" when absent.
pub fn when(t: Option<DateTime<Utc>>) -> Markup {
    match t {
        Some(t) => html! {
            time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M")) " UTC" }
        },
        None => html! { span.muted { "never" } },
    }
}

/// A path segment, percent-encoded (device ids and usernames in action URLs).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Raw markup (the server-drawn SVG chart, already built from numbers only).
pub fn raw(s: String) -> Markup {
    PreEscaped(s)
}
