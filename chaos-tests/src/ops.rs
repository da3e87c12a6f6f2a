//! Reading the operator's files in `ops/` for the tests that check them: where they are,
//! the PromQL queries of the Grafana dashboard (with Grafana's interval variables filled
//! in), and the series selectors inside a PromQL expression.
//!
//! The checks themselves are the real tools (promtool, a real Prometheus); this module only
//! takes the queries out of the files so that those tools can be given each one.

use std::path::PathBuf;

use serde_json::Value;

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// `ops/` of the workspace.
pub fn ops_dir() -> PathBuf {
    workspace_root().join("ops")
}

/// One query of a dashboard panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelQuery {
    /// The panel's title.
    pub panel: String,
    /// The panel's type (`timeseries`, `state-timeline`, ...).
    pub kind: String,
    /// The target's `expr`, as written (Grafana variables unreplaced).
    pub expr: String,
}

/// Every target `expr` of every panel of `dashboard` (rows' collapsed panels included, in
/// the order of the file), then the `expr` of every annotation query, as a [`PanelQuery`]
/// of kind `annotation` named after the annotation.
pub fn dashboard_queries(dashboard: &Value) -> Vec<PanelQuery> {
    let mut out = Vec::new();
    if let Some(panels) = dashboard.get("panels").and_then(Value::as_array) {
        collect_panels(panels, &mut out);
    }
    let annotations = dashboard
        .pointer("/annotations/list")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    for annotation in annotations {
        if let Some(expr) = annotation.get("expr").and_then(Value::as_str) {
            out.push(PanelQuery {
                panel: annotation
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                kind: "annotation".to_owned(),
                expr: expr.to_owned(),
            });
        }
    }
    out
}

fn collect_panels(panels: &[Value], out: &mut Vec<PanelQuery>) {
    for panel in panels {
        let title = panel.get("title").and_then(Value::as_str).unwrap_or("");
        let kind = panel.get("type").and_then(Value::as_str).unwrap_or("");
        for target in panel
            .get("targets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(expr) = target.get("expr").and_then(Value::as_str) {
                out.push(PanelQuery {
                    panel: title.to_owned(),
                    kind: kind.to_owned(),
                    expr: expr.to_owned(),
                });
            }
        }
        if let Some(nested) = panel.get("panels").and_then(Value::as_array) {
            collect_panels(nested, out);
        }
    }
}

/// `expr` with Grafana's interval variables replaced: `$__rate_interval` and `$__interval`
/// by `rate_interval`, `$__range` by `range` (PromQL durations such as `30s`).
pub fn fill_grafana_vars(expr: &str, rate_interval: &str, range: &str) -> String {
    expr.replace("${__rate_interval}", rate_interval)
        .replace("$__rate_interval", rate_interval)
        .replace("${__interval}", rate_interval)
        .replace("$__interval", rate_interval)
        .replace("${__range}", range)
        .replace("$__range", range)
}

/// PromQL words that are followed by a label list in parentheses, not by an expression.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// PromQL words that are never metric names: operators, modifiers and aggregations (which
/// may be followed by `by (...)` rather than by their parenthesis).
const NOT_METRICS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "inf",
    "nan",
    "Inf",
    "NaN",
];

/// The instant-vector selectors in `expr`, each as `name{matchers}` (or `name`) as written,
/// without duplicates, in order of appearance: what a query must find for the expression
/// to have anything to work on. Function names, aggregations, keywords, label lists,
/// strings, numbers, durations and range brackets are skipped.
pub fn promql_selectors(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(&chars, i);
        } else if c == '[' {
            i = skip_group(&chars, i, '[', ']');
        } else if c == '#' {
            // A comment runs to the end of the line.
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c.is_ascii_digit() || (c == '.' && next_is_digit(&chars, i)) {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':'))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let after = skip_space(&chars, i);
            if LABEL_LIST_KEYWORDS.contains(&word.as_str()) {
                if chars.get(after) == Some(&'(') {
                    i = skip_group(&chars, after, '(', ')');
                }
                continue;
            }
            if chars.get(after) == Some(&'(') || NOT_METRICS.contains(&word.as_str()) {
                continue;
            }
            let selector = if chars.get(after) == Some(&'{') {
                let end = skip_group(&chars, after, '{', '}');
                i = end;
                format!("{word}{}", chars[after..end].iter().collect::<String>())
            } else {
                word
            };
            if !out.contains(&selector) {
                out.push(selector);
            }
        } else {
            i += 1;
        }
    }
    out
}

fn next_is_digit(chars: &[char], i: usize) -> bool {
    chars.get(i + 1).is_some_and(char::is_ascii_digit)
}

fn skip_space(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    i
}

/// The index after the string that starts at `start` (its quote), escapes honoured.
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

/// The index after the group that opens at `start`, nested groups and strings skipped.
fn skip_group(chars: &[char], start: usize, open: char, close: char) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(chars, i);
            continue;
        }
        if c == open {
            depth += 1;
        } else if c == close {
            depth = depth.saturating_sub(1);
            if depth == 0 {
                return i + 1;
            }
        }
        i += 1;
    }
    chars.len()
}

/// `text` percent-encoded for a URL query value (everything but unreserved characters).
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_of_alert_expressions() {
        let expr = r#"(
            sum by (pair) (hearth_bstar_state{job="hearth", state="active"})
            or sum by (pair) (up{job="hearth"}) * 0
          ) == 0"#;
        assert_eq!(
            promql_selectors(expr),
            vec![
                r#"hearth_bstar_state{job="hearth", state="active"}"#,
                r#"up{job="hearth"}"#
            ]
        );
        let expr = r#"histogram_quantile(0.99, sum by (service, le) (rate(hearth_request_duration_seconds_bucket{job="hearth"}[5m])))
            unless on (instance, service) hearth_workers > 0 and deriv(hearth_queue_depth[10m:1m] offset 5m) > 1e3"#;
        assert_eq!(
            promql_selectors(expr),
            vec![
                r#"hearth_request_duration_seconds_bucket{job="hearth"}"#,
                "hearth_workers",
                "hearth_queue_depth"
            ]
        );
        assert_eq!(
            promql_selectors(r#"max(x{a="}{(by"}) by (instance) # up"#),
            vec![r#"x{a="}{(by"}"#]
        );
        assert!(promql_selectors("vector(1) + 2.5").is_empty());
    }

    #[test]
    fn grafana_vars_and_url_encoding() {
        assert_eq!(
            fill_grafana_vars(
                "rate(x[$__rate_interval]) + increase(y[${__range}])",
                "10s",
                "1m"
            ),
            "rate(x[10s]) + increase(y[1m])"
        );
        assert_eq!(url_encode(r#"up{a="b c"}"#), "up%7Ba%3D%22b%20c%22%7D");
    }

    #[test]
    fn dashboard_queries_include_row_panels() {
        let dashboard = serde_json::json!({
            "panels": [
                {"title": "a", "type": "timeseries", "targets": [{"expr": "up"}]},
                {"title": "row", "type": "row", "panels": [
                    {"title": "b", "type": "stat", "targets": [{"expr": "x"}, {"refId": "B"}]}
                ]}
            ],
            "annotations": {"list": [{"name": "n", "expr": "changes(y[1m]) > 0"}]}
        });
        let queries = dashboard_queries(&dashboard);
        let exprs: Vec<&str> = queries.iter().map(|q| q.expr.as_str()).collect();
        assert_eq!(exprs, vec!["up", "x", "changes(y[1m]) > 0"]);
        assert_eq!(queries[1].panel, "b");
        assert_eq!(
            (queries[2].panel.as_str(), queries[2].kind.as_str()),
            ("n", "annotation")
        );
    }
}
