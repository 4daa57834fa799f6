//! Secrets (database URLs, API keys) and their redacted forms.
//!
//! A [`Secret`] never shows its value through `Display` or `Debug`; code that needs the value calls
//! [`Secret::expose`] at the point of use. [`redact_text`] is the safety net the binary runs over everything
//! it prints or logs, in case a secret reached a message through a third-party error.

use std::fmt;

/// A value that must not be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the single place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// Query parameters whose values are secrets in the URL formats Prisma accepts.
const SECRET_PARAMS: &[&str] = &["password", "sslpassword", "pass", "pwd", "api_key", "apikey", "token", "secret"];

/// A copy of `url` safe to print: the password (and secret-looking query parameters) replaced by `****`.
///
/// Works on URLs the `url` crate cannot parse too (SQL Server's `;password=…` form, half-typed URLs),
/// because a user's typo must not leak the secret in the error that reports it.
pub fn redact_url(url: &str) -> String {
    redact_text(url)
}

/// Masks every credential found in free text: `scheme://user:password@`, and `password=…` style
/// parameters (in query strings and in `;key=value` connection strings). Everything else is unchanged.
pub fn redact_text(text: &str) -> String {
    redact(text).into_owned()
}

/// [`redact_text`] without a copy when nothing is masked (the log writer's path: most lines, every
/// access-log line among them, hold no credential).
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    let masked = if text.contains("://") { Cow::Owned(mask_userinfo(text)) } else { Cow::Borrowed(text) };
    match masked {
        Cow::Borrowed(t) => mask_params(t).map_or(Cow::Borrowed(t), Cow::Owned),
        Cow::Owned(t) => Cow::Owned(mask_params(&t).unwrap_or(t)),
    }
}

fn mask_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        // A well-formed authority ends at the first '/', '?', '#' or whitespace, its userinfo at its last '@'.
        let strict_end =
            tail.find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace()).unwrap_or(tail.len());
        let strict = &tail[..strict_end];
        // A password with an unencoded '/', '?', '#', '@' or space ends the strict authority early, so the
        // userinfo may close at any '@' up to the end of the line (or the next URL). Taking the last one
        // masks too much at worst (an '@' in a query string), never too little.
        let reach = [tail.find('\n'), tail.find("://")].into_iter().flatten().min().unwrap_or(tail.len());
        let at = if strict.contains('@') || strict.contains(':') {
            // An '@' right after a '/' starts a path segment (npm scopes: `/@prisma%2Fengines`), not a
            // password's end.
            tail[..reach]
                .rmatch_indices('@')
                .map(|(i, _)| i)
                .find(|&i| !tail[..i].ends_with('/') && (tail[..i].contains(':') || strict.contains('@')))
        } else {
            None
        };
        match at {
            Some(at) => {
                let userinfo = &tail[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":****");
                    }
                    None => out.push_str(userinfo),
                }
                out.push('@');
                rest = &tail[at + 1..];
            }
            None => {
                out.push_str(strict);
                rest = &tail[strict_end..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Masks the value of every `name=value` whose name is a secret parameter and starts at a boundary
/// (line start, `?`, `&`, `;` or whitespace); `None` when there is none. Only the `=` signs are visited,
/// and only a name of a secret parameter's length is compared, so a line of many ordinary pairs (an
/// access-log line) costs a few comparisons each.
fn mask_params(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    for (eq, _) in text.match_indices('=') {
        if eq < copied {
            continue;
        }
        let start = bytes[..eq].iter().rposition(|b| matches!(b, b'?' | b'&' | b';' | b' ' | b'\t' | b'\n'));
        let name = &bytes[start.map_or(0, |s| s + 1)..eq];
        if !SECRET_PARAMS.iter().any(|p| name.eq_ignore_ascii_case(p.as_bytes())) {
            continue;
        }
        let value_start = eq + 1;
        let value_end = text[value_start..]
            .find(|c: char| c == '&' || c == ';' || c == '#' || c.is_whitespace())
            .map_or(text.len(), |e| value_start + e);
        let buf = out.get_or_insert_with(|| String::with_capacity(text.len()));
        buf.push_str(&text[copied..value_start]);
        buf.push_str("****");
        copied = value_end;
    }
    out.map(|mut buf| {
        buf.push_str(&text[copied..]);
        buf
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: &str) {
        assert_eq!(redact_text(input), expect, "input: {input}");
    }

    #[test]
    fn urls() {
        check(
            "postgresql://postgres:s3cret@db:5432/app?schema=public",
            "postgresql://postgres:****@db:5432/app?schema=public",
        );
        check("mysql://root@127.0.0.1:3306/test", "mysql://root@127.0.0.1:3306/test");
        check("postgres://u:p%40ss@h/db", "postgres://u:****@h/db");
        check("postgres://u:pa@ss@h/db", "postgres://u:****@h/db");
        check("file:./dev.db", "file:./dev.db");
        check("postgresql://h/db?sslpassword=abc&schema=x", "postgresql://h/db?sslpassword=****&schema=x");
        check("prisma://proxy.example/?api_key=eyJhbGci", "prisma://proxy.example/?api_key=****");
    }

    #[test]
    fn free_text() {
        check(
            "error connecting to postgresql://a:b@h:1/d: refused; retry postgresql://c:d@h2/e",
            "error connecting to postgresql://a:****@h:1/d: refused; retry postgresql://c:****@h2/e",
        );
        check(
            "sqlserver://host:1433;database=app;user=sa;password=Hunter2;encrypt=true",
            "sqlserver://host:1433;database=app;user=sa;password=****;encrypt=true",
        );
        check("nothing secret here: 3 < 4", "nothing secret here: 3 < 4");
        check("ünïcödé://x:y@z", "ünïcödé://x:****@z");
        // Unencoded special characters in the password must not end the masking early.
        check("postgresql://u:se/cret@127.0.0.1:1/db", "postgresql://u:****@127.0.0.1:1/db");
        check("postgresql://u:se#cret@h/db", "postgresql://u:****@h/db");
        check("postgresql://u:se?cret@h/db", "postgresql://u:****@h/db");
        check(
            "cannot connect to `postgresql://u:sec ret@h:1/db`: refused",
            "cannot connect to `postgresql://u:****@h:1/db`: refused",
        );
        check("postgresql://u:a@b/c@h/db", "postgresql://u:****@h/db");
        check("postgresql://127.0.0.1:5432/db\nuser@example", "postgresql://127.0.0.1:5432/db\nuser@example");
        check("postgresql://user@host:5432/db", "postgresql://user@host:5432/db");
        check(
            "http://127.0.0.1:4873/@prisma%2Fengines/5.21.0 answered 404",
            "http://127.0.0.1:4873/@prisma%2Fengines/5.21.0 answered 404",
        );
        check("https://u:p@registry.example/@prisma%2Fengines", "https://u:****@registry.example/@prisma%2Fengines");
    }

    #[test]
    fn secret_never_displays() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "**** Secret(****)");
        assert_eq!(s.expose(), "hunter2");
    }
}
