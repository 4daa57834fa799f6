//! The query engines' own metrics, merged into pdp's `/metrics`: each running engine's Prometheus text is
//! scraped (half a second at most), every sample labelled `engine="<engine>/<schema>#<pool slot>"`, OpenMetrics
//! counter families named without `_total`, and each family's HELP and TYPE kept once.
//!
//! Deliberately not here: pdp's own metrics (`metrics`), which engines run (`dp1` lists them).

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body_util::BodyExt;

use pdp_toolchain::launch::ChildAddr;

use crate::kit::Forwarder;
use crate::kit::forward::Upstreams;

/// The `/metrics` of each running child in `children` (a short timeout each), labelled `engine="<label>"`,
/// HELP/TYPE once per family, ready to insert before pdp's `# EOF`.
pub async fn scrape(forwarder: &Forwarder, via: &Upstreams, children: &[(String, ChildAddr)]) -> String {
    let mut seen_meta: HashSet<String> = HashSet::new();
    let mut out = String::new();
    for (label, addr) in children {
        let Ok(resp) = forwarder
            .forward(via, addr, Method::GET, "/metrics", &HeaderMap::new(), Bytes::new(), Duration::from_millis(500))
            .await
        else {
            continue;
        };
        if !resp.status().is_success() {
            continue;
        }
        let Ok(Ok(collected)) = tokio::time::timeout(Duration::from_millis(500), resp.into_body().collect()).await
        else {
            continue;
        };
        let text = String::from_utf8_lossy(&collected.to_bytes()).into_owned();
        out.push_str(&relabel(&text, label, &mut seen_meta));
    }
    out
}

/// One engine's Prometheus text with `engine="<label>"` on every sample; OpenMetrics counter families
/// are named without `_total`; HELP/TYPE lines already in `seen` are dropped.
pub fn relabel(text: &str, label: &str, seen: &mut HashSet<String>) -> String {
    // The exposition format's escapes for a label value: backslash, double quote, line feed.
    let label = label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let mut out = String::new();
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() || line == "# EOF" {
            continue;
        }
        if let Some(meta) = line.strip_prefix("# ") {
            let mut words = meta.splitn(3, ' ');
            let (Some(kind @ ("HELP" | "TYPE")), Some(name)) = (words.next(), words.next()) else { continue };
            let rest = words.next().unwrap_or("");
            let family = name.strip_suffix("_total").unwrap_or(name);
            if seen.insert(format!("{kind} {family}")) {
                out.push_str(&format!("# {kind} {family} {rest}\n"));
            }
            continue;
        }
        match line.find(['{', ' ']) {
            Some(i) if line.as_bytes()[i] == b'{' => {
                let sep = if line[i + 1..].starts_with('}') { "" } else { "," };
                out.push_str(&format!("{}{{engine=\"{label}\"{sep}{}\n", &line[..i], &line[i + 1..]));
            }
            Some(i) => out.push_str(&format!("{}{{engine=\"{label}\"}}{}\n", &line[..i], &line[i..])),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `metrics_relabel` fuzz target: a line feed in the label split a sample in two.
    #[test]
    fn a_label_value_is_escaped_as_the_exposition_format_says() {
        let out = relabel("query_total 1\n", "a\"b\\c\nd", &mut HashSet::new());
        assert_eq!(out, "query_total{engine=\"a\\\"b\\\\c\\nd\"} 1\n");
    }

    #[test]
    fn engine_metrics_are_labelled_and_families_named_once() {
        let text = "# HELP prisma_client_queries_total The total\n# TYPE prisma_client_queries_total counter\nprisma_client_queries_total 3\nprisma_pool{a=\"b\"} 1\nx{} 2\n";
        let mut seen = HashSet::new();
        let one = relabel(text, "wasm/abc", &mut seen);
        assert_eq!(
            one,
            "# HELP prisma_client_queries The total\n# TYPE prisma_client_queries counter\nprisma_client_queries_total{engine=\"wasm/abc\"} 3\nprisma_pool{engine=\"wasm/abc\",a=\"b\"} 1\nx{engine=\"wasm/abc\"} 2\n"
        );
        let two = relabel(text, "wasm/def", &mut seen);
        assert!(!two.contains("# "), "{two}");
    }
}
