//! What every dashboard page shares: the frame (header, navigation, messages), the bare
//! pages (login, refusals), one-button action forms and small formatting helpers. maud
//! escapes every value it inserts.

use maud::{DOCTYPE, Markup, html};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::session::Flash;

/// Which page the navigation marks as current.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Page {
    System,
    Patches,
    Hosts,
    Orchestration,
    Alarms,
    DistributedCloud,
    None,
}

const NAV: [(Page, &str, &str); 6] = [
    (Page::System, "/system", "System"),
    (Page::Patches, "/patches", "Patches"),
    (Page::Hosts, "/hosts", "Hosts"),
    (Page::Orchestration, "/orchestration", "Patch Orchestration"),
    (Page::Alarms, "/alarms", "Alarms"),
    (Page::DistributedCloud, "/dc", "Distributed Cloud"),
];

/// Why the swact button is greyed out: the patching service runs on one controller daemon.
pub(crate) const SWACT_UNAVAILABLE: &str =
    "Swact needs a standby patching controller; this controller runs without a peer.";

/// What a URL path segment or query value keeps as it is: RFC 3986's unreserved bytes.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes for a URL path segment or query value.
pub(crate) fn url_encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

pub(crate) fn yes_no(b: bool) -> &'static str {
    if b { "Yes" } else { "No" }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · StarlingX Software Management" }
            link rel="stylesheet" href="/static/dashboard.css";
            script src="/static/dashboard.js" defer {}
        }
    }
}

/// A page for a signed-in operator.
pub(crate) fn layout(
    page: Page,
    csrf: &str,
    flashes: &[Flash],
    system_line: &str,
    body: Markup,
) -> Markup {
    let title = NAV
        .iter()
        .find(|(p, _, _)| *p == page)
        .map_or("Dashboard", |(_, _, t)| t);
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header {
                    div.brand { "StarlingX " span { "Software Management" } }
                    div.sysline { (system_line) }
                    form.logout method="post" action="/logout" {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" id="logout" { "Log out" }
                    }
                }
                nav {
                    @for (p, href, label) in NAV {
                        a href=(href) class=[(p == page).then_some("current")] { (label) }
                    }
                }
                main {
                    @if !flashes.is_empty() {
                        div.flashes id="messages" {
                            @for f in flashes {
                                div class={"flash " (f.level.class())} role="alert" { (f.text) }
                            }
                        }
                    }
                    (body)
                }
            }
        }
    }
}

/// A page without the navigation (login, refusals).
pub(crate) fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare {
                header { div.brand { "StarlingX " span { "Software Management" } } }
                main { (body) }
            }
        }
    }
}

pub(crate) fn message_page(title: &str, message: &str) -> Markup {
    html! {
        h1 { (title) }
        p.message { (message) }
    }
}

pub(crate) fn login_link(body: Markup) -> Markup {
    html! {
        (body)
        p { a href="/system" { "Back to the dashboard" } }
    }
}

pub(crate) fn login(csrf: &str, next: Option<&str>, error: Option<&str>) -> Markup {
    bare(
        "Log in",
        html! {
            h1 { "Log in" }
            @if let Some(e) = error {
                div.flash.error role="alert" id="login-error" { (e) }
            }
            form.login method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                @if let Some(n) = next { input type="hidden" name="next" value=(n); }
                label for="token" { "Operator token" }
                input type="password" name="token" id="token" autocomplete="current-password" required autofocus;
                button type="submit" id="login" { "Log in" }
                p.hint { "Use one of the controller's API tokens (auth_tokens)." }
            }
        },
    )
}

/// A button in a one-button form that posts the CSRF token and `fields`; greyed out with
/// the reason when not allowed.
pub(crate) fn action_button(
    action: &str,
    label: &str,
    csrf: &str,
    fields: &[(&str, &str)],
    refused: Option<&str>,
    confirm: Option<&str>,
) -> Markup {
    html! {
        form.inline method="post" action=(action) data-confirm=[confirm] {
            input type="hidden" name="csrf" value=(csrf);
            @for (k, v) in fields { input type="hidden" name=(k) value=(v); }
            @match refused {
                Some(reason) => button type="submit" disabled title=(reason) data-action=(label) { (label) },
                None => button type="submit" data-action=(label) { (label) },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_keeps_only_unreserved_bytes() {
        assert_eq!(url_encode("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(url_encode("STX_19.01_PATCH_0001"), "STX_19.01_PATCH_0001");
    }
}
