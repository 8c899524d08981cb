//! Operations artefacts: the Grafana dashboards, the Prometheus alert rules and the Docker
//! files are checked like code.
//!
//! ```text
//!  dashboards/*.json ──► JSON Schema (grafana-dashboard.schema.json), variables, datasources
//!        │                                                          (dashboards.rs)
//!        ├──► every metric name exists in src/metrics.rs            (dashboards.rs)
//!        └──► every query against a real Prometheus scraping a real engine returns data
//!                                                                   (prometheus.rs)
//!  dashboards/walaudit-alerts.yml ──► promtool check rules / test rules, metric names
//!                                                                   (alerts.rs)
//!  docker/ ──► compose services, mounts, build context, walaudit.toml through walaudit's own
//!              config loader, Dockerfile stages                     (docker.rs)
//!  dashboards/README.md metrics reference ──► exactly the names of src/metrics.rs, with
//!              their types and labels                               (reference.rs)
//! ```
//!
//! `grafana-dashboard.schema.json` beside this file is a copy of Grafana's dashboard JSON
//! Schema (from grafana/grafana-foundation-sdk, `jsonschema/dashboard.jsonschema.json`,
//! Apache-2.0), so that the tests need no network. It lives here, not under `dashboards/`,
//! because Grafana's file provisioning loads every `.json` below the dashboards folder,
//! subfolders included.

use std::path::{Path, PathBuf};

use serde_json::Value;

mod alerts;
mod dashboards;
mod docker;
mod prometheus;
mod reference;

/// Metrics the dashboards or alerts may use although the engine does not expose them yet: a
/// query on them may return no data. Keep this list minimal; every entry says why it is here.
/// An entry stops applying as soon as the engine exposes the metric (see prometheus.rs).
pub const PENDING_METRICS: &[(&str, &str)] = &[];

/// Series Prometheus makes itself (not in src/metrics.rs): `up` is the scrape health.
pub const PROMETHEUS_METRICS: &[&str] = &["up"];

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every dashboard in `dashboards/`: (file name, parsed JSON), by file name.
pub fn dashboards() -> Vec<(String, Value)> {
    let dir = repo().join("dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 2,
        "the overview and the table dashboards: {files:?}"
    );
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            (file_name(&path), json)
        })
        .collect()
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// The panels of a dashboard, those inside rows included (rows themselves excluded).
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        if panel["type"] == "row" {
            out.extend(panel["panels"].as_array().into_iter().flatten());
        } else {
            out.push(panel);
        }
    }
    out
}

/// One PromQL query of a dashboard panel.
#[derive(Debug)]
pub struct PanelQuery {
    pub dashboard: String,
    pub panel: String,
    pub ref_id: String,
    pub expr: String,
}

/// Every target expression of every panel of every dashboard.
pub fn panel_queries() -> Vec<PanelQuery> {
    let mut out = Vec::new();
    for (name, dashboard) in dashboards() {
        for panel in panels(&dashboard) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                out.push(PanelQuery {
                    dashboard: name.clone(),
                    panel: panel["title"].as_str().unwrap_or("?").to_owned(),
                    ref_id: target["refId"].as_str().unwrap_or("?").to_owned(),
                    expr: target["expr"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{name}: a target without expr: {target}"))
                        .to_owned(),
                });
            }
        }
    }
    out
}

/// `label_values(<selector>, <label>)` of a query variable, split.
pub fn label_values(query: &str) -> Option<(&str, &str)> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (selector, label) = inner.rsplit_once(',')?;
    Some((selector.trim(), label.trim()))
}

/// The metric names a PromQL expression selects (not functions, aggregations, keywords,
/// labels, strings, numbers or durations).
pub fn metric_names(expr: &str) -> Vec<String> {
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "atan2",
        "inf",
        "nan",
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
    ];
    // Followed by a parenthesised list of label names.
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let next_non_space = |mut i: usize| {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        (i, chars.get(i).copied())
    };
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(&chars, i);
        } else if c == '{' {
            i = skip_to(&chars, i, '}');
        } else if c == '[' {
            i = skip_to(&chars, i, ']');
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':'))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let (after, next) = next_non_space(i);
            if LABEL_LISTS.contains(&word.as_str()) {
                if next == Some('(') {
                    i = skip_to(&chars, after, ')');
                }
            } else if KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) || next == Some('(') {
                // An aggregation, a keyword or a function call.
            } else {
                names.push(word);
            }
        } else if c.is_ascii_digit() || c == '.' {
            // Numbers, including 1e3, 0x1f and durations like 5m.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The index after the string literal starting at `start`.
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' && quote != '`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// The index after the `close` that ends the group opened at `start` (strings skipped).
fn skip_to(chars: &[char], start: usize, close: char) -> usize {
    let mut i = start + 1;
    while i < chars.len() && chars[i] != close {
        if matches!(chars[i], '"' | '\'' | '`') {
            i = skip_string(chars, i);
        } else {
            i += 1;
        }
    }
    i + 1
}

/// One metric family of the engine's exposition.
#[derive(Debug)]
pub struct Family {
    pub name: String,
    /// `counter`, `gauge`, `histogram`, …
    pub kind: String,
    /// The label names of its series (`le` of histogram buckets excluded).
    pub labels: Vec<String>,
}

/// Every metric family the engine's registry exposes, from the exposition of a fresh
/// [`walaudit::metrics::Metrics`].
///
/// A labelled family appears in the exposition only once it has a series, so the labelled
/// families without preset series get one here; a check against the `pub const` names of
/// src/metrics.rs makes sure none is forgotten.
pub fn registry_families() -> Vec<Family> {
    let metrics = walaudit::metrics::Metrics::new();
    metrics.changes.with_label_values(&["public.t", "c"]);
    metrics.lake_rows.with_label_values(&["public.t"]);
    metrics.slot_retained_wal.with_label_values(&["walaudit"]);
    metrics
        .slot_wal_status
        .with_label_values(&["walaudit", "reserved"]);
    metrics.snapshot_rows.with_label_values(&["public.t"]);
    metrics
        .snapshot_rows_expected
        .with_label_values(&["public.t"]);
    metrics
        .snapshot_chunks
        .with_label_values(&["public.t", "copied"]);
    metrics
        .http_requests
        .with_label_values(&["/audit_events", "GET", "200"]);
    metrics
        .http_request_seconds
        .with_label_values(&["/audit_events"])
        .observe(0.01);
    let text = metrics.render();
    let mut families: Vec<Family> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            families.push(Family {
                name: name.to_owned(),
                kind: kind.to_owned(),
                labels: Vec::new(),
            });
        } else if let Some((_, labels)) = line.split_once('{')
            && !line.starts_with('#')
        {
            let family = families.last_mut().expect("a series after its # TYPE line");
            for pair in labels.split('}').next().unwrap_or("").split(',') {
                let label = pair.split('=').next().unwrap_or("").trim();
                if !label.is_empty() && label != "le" && !family.labels.iter().any(|l| l == label) {
                    family.labels.push(label.to_owned());
                }
            }
        }
    }
    for name in defined_metric_names() {
        assert!(
            families.iter().any(|f| f.name == name),
            "{name} (src/metrics.rs) is not in the exposition: give it a series in \
             tests/ops/mod.rs registry_families"
        );
    }
    families
}

/// Every metric name the engine's registry exposes (histograms with their `_bucket`, `_sum`
/// and `_count` series).
pub fn registry_metric_names() -> Vec<String> {
    let mut names = Vec::new();
    for family in registry_families() {
        if family.kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.push(format!("{}{suffix}", family.name));
            }
        } else {
            names.push(family.name);
        }
    }
    names
}

/// The metric names src/metrics.rs defines: the values of its `pub const … = "…";` lines.
pub fn defined_metric_names() -> Vec<String> {
    let source = std::fs::read_to_string(repo().join("src/metrics.rs")).unwrap();
    let mut names = Vec::new();
    for line in source.lines() {
        let Some((_, value)) = line
            .trim()
            .strip_prefix("pub const ")
            .and_then(|l| l.split_once("= \""))
        else {
            continue;
        };
        names.push(value.trim_end_matches("\";").to_owned());
    }
    assert!(names.len() >= 10, "src/metrics.rs names: {names:?}");
    names
}

#[test]
fn metric_names_skips_functions_labels_and_literals() {
    let expr = r#"histogram_quantile(0.99, sum by (le) (rate(walaudit_lake_commit_duration_seconds_bucket{instance=~"$instance", x="a}b"}[$__rate_interval])))"#;
    assert_eq!(
        metric_names(expr),
        ["walaudit_lake_commit_duration_seconds_bucket"]
    );
    assert_eq!(
        metric_names("up{job=\"walaudit\"} == 0 or absent(up{job=\"walaudit\"})"),
        ["up", "up"]
    );
    assert_eq!(
        metric_names("walaudit_streaming == 0 and on (instance) process_open_fds > 1e3"),
        ["walaudit_streaming", "process_open_fds"]
    );
    assert_eq!(
        metric_names("topk(10, sum without (op) (increase(a_total[5m] offset 1h)))"),
        ["a_total"]
    );
    assert_eq!(
        label_values("label_values(walaudit_changes_total{instance=~\"$instance\"}, table)"),
        Some(("walaudit_changes_total{instance=~\"$instance\"}", "table"))
    );
}
