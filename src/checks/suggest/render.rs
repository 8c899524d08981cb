//! The job file of a [`Profile`]: YAML written by hand, strings as JSON scalars (which YAML
//! reads alike), one comment per check saying what the profile saw.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Kind, Profile};

/// The job file for `p`, profiled at `now`.
pub fn render(p: &Profile, max_scan_rows: u64, now: DateTime<Utc>) -> String {
    let mut y = String::new();
    let at = now.format("%Y-%m-%dT%H:%M:%SZ");
    let keys_from = if p.catalog {
        "keys and references from the catalog (pg_constraint)"
    } else {
        "unique columns as observed (the lake has no constraints)"
    };
    let _ = writeln!(
        y,
        "# Suggested by `walaudit check suggest` at {at}\n\
         # from connection `{}`, dataset {}: {} rows, {} columns.\n\
         # One scan profiled every column (nulls, exact count(DISTINCT), min/max of numbers,\n\
         # dates and timestamps); one more query read the values of low-cardinality text;\n\
         # {keys_from}.\n\
         # The thresholds are what the data held then: review them before relying on them.",
        p.connection,
        p.dataset,
        p.rows,
        p.columns.len()
    );
    y.push_str("jobs:\n");
    let _ = writeln!(y, "  - name: {}", js(&job_name(&p.dataset)));
    let _ = writeln!(y, "    connection: {}", js(&p.connection));
    let _ = writeln!(y, "    dataset: {}", js(&p.dataset));
    if p.rows > max_scan_rows {
        let _ = writeln!(
            y,
            "    # {} rows, above checks.max_scan_rows: these checks read the table whole. \
             Prefer a\n    # `filter` on an indexed column or a `window`, and drop this.\n    \
             allow_full_scan: true",
            p.rows
        );
    }
    y.push_str("    checks:\n");
    let check = |y: &mut String, comment: &str, lines: &[String]| {
        if !comment.is_empty() {
            let _ = writeln!(y, "      # {comment}");
        }
        for (i, l) in lines.iter().enumerate() {
            let _ = writeln!(y, "      {}{l}", if i == 0 { "- " } else { "  " });
        }
    };
    check(
        &mut y,
        &format!("{} rows when profiled", p.rows),
        &["type: row_count".into(), "must_be_greater_than: 0".into()],
    );
    let mut keys: Vec<Vec<String>> = p.keys.clone();
    if !p.catalog {
        for c in &p.columns {
            let non_null = p.rows - c.nulls.min(p.rows);
            if matches!(c.kind, Kind::Number | Kind::Text)
                && !c.name.starts_with('_')
                && p.rows >= 2
                && c.nulls == 0
                && c.distinct == Some(non_null)
            {
                keys.push(vec![c.name.clone()]);
            }
        }
    }
    let keyed: BTreeSet<&str> = keys
        .iter()
        .flatten()
        .chain(p.foreign_keys.iter().flat_map(|f| &f.columns))
        .map(String::as_str)
        .collect();
    let now_us = now.timestamp_micros();
    for c in &p.columns {
        let col = format!("column: {}", js(&c.name));
        // The lake's own columns (`_lsn`, `_commit_ts`, …) get no missing checks or ranges.
        let engine = !p.catalog && c.name.starts_with('_');
        if p.rows > 0 && c.nulls >= p.rows {
            let _ = writeln!(y, "      # {}: every value is null; no checks", c.name);
            continue;
        } else if p.rows > 0 && c.nulls == 0 && !engine {
            check(
                &mut y,
                &format!("{}: no nulls", c.name),
                &["type: missing".into(), col.clone(), "must_be: 0".into()],
            );
        } else if p.rows > 0 && !engine {
            let pct = c.nulls as f64 * 100.0 / p.rows as f64;
            let bound = (pct * 2.0).ceil().clamp(1.0, 100.0);
            check(
                &mut y,
                &format!("{}: {pct:.2}% null", c.name),
                &[
                    "type: missing".into(),
                    col.clone(),
                    "metric: percent".into(),
                    format!("must_be_less_than_or_equal: {}", num(bound)),
                ],
            );
        }
        let own = !keyed.contains(c.name.as_str()) && !engine;
        if let (Some(lo), Some(hi), true) = (c.min, c.max, own)
            && lo.is_finite()
            && hi.is_finite()
        {
            let (min, max) = (if lo >= 0.0 { 0.0 } else { -nice_up(-lo) }, nice_up(hi));
            check(
                &mut y,
                &format!(
                    "{}: {} to {} when profiled, widened",
                    c.name,
                    num(lo),
                    num(hi)
                ),
                &[
                    "type: invalid".into(),
                    col.clone(),
                    format!("valid_min: {}", num(min)),
                    format!("valid_max: {}", num(max)),
                ],
            );
        }
        if let Some(values) = &c.values {
            let list: Vec<String> = values.iter().map(|v| js(v)).collect();
            check(
                &mut y,
                &format!("{}: {} values", c.name, values.len()),
                &[
                    "type: invalid".into(),
                    col.clone(),
                    format!("valid_values: [{}]", list.join(", ")),
                ],
            );
        }
        if c.newest.is_some_and(|n| n <= now_us) {
            check(
                &mut y,
                &format!("{}: none in the future", c.name),
                &[
                    "type: invalid".into(),
                    col.clone(),
                    "not_in_future: true".into(),
                ],
            );
        }
    }
    for k in &keys {
        let list: Vec<String> = k.iter().map(|c| js(c)).collect();
        check(
            &mut y,
            if p.catalog {
                "a primary or unique key"
            } else {
                "unique when profiled"
            },
            &[
                "type: duplicate".into(),
                format!("columns: [{}]", list.join(", ")),
            ],
        );
    }
    // Freshness: the timestamp column with the newest value (none in the future).
    let newest = p
        .columns
        .iter()
        .filter(|c| c.kind == Kind::Timestamp)
        .filter_map(|c| c.newest.filter(|n| *n <= now_us).map(|n| (c, n)))
        .max_by_key(|(_, n)| *n);
    if let Some((c, n)) = newest {
        let age = Duration::from_micros((now_us - n).max(0) as u64);
        let bound = (age * 2).max(age + Duration::from_secs(300));
        check(
            &mut y,
            &format!("the newest {} was {} old", c.name, duration(age)),
            &[
                "type: freshness".into(),
                format!("column: {}", js(&c.name)),
                format!("must_be_less_than: {}", duration(bound)),
            ],
        );
    }
    for fk in &p.foreign_keys {
        let list = |v: &[String]| v.iter().map(|c| js(c)).collect::<Vec<_>>().join(", ");
        check(
            &mut y,
            &format!("foreign key to {}", fk.dataset),
            &[
                "type: reference".into(),
                format!("columns: [{}]", list(&fk.columns)),
                format!(
                    "references: {{dataset: {}, columns: [{}]}}",
                    js(&fk.dataset),
                    list(&fk.ref_columns)
                ),
            ],
        );
    }
    y
}

/// A YAML scalar for `text`: a JSON string, which YAML reads alike.
fn js(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

/// A job name from a dataset: `[A-Za-z0-9_.-]`, the rest `_`, quotes dropped.
pub(super) fn job_name(dataset: &str) -> String {
    let name: String = dataset
        .chars()
        .filter(|c| *c != '"')
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    if name.is_empty() {
        "suggested".into()
    } else {
        name
    }
}

/// A number as YAML: integers without a fraction.
fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// The smallest of 1, 2, 5 × 10^k at or above `x` (`x` > 0); `x` itself when ≤ 0.
pub(super) fn nice_up(x: f64) -> f64 {
    if x <= 0.0 {
        return x.ceil();
    }
    let mut step = 10f64.powf(x.log10().floor());
    loop {
        for m in [1.0, 2.0, 5.0] {
            if m * step >= x {
                return m * step;
            }
        }
        step *= 10.0;
    }
}

/// A duration rounded up to whole minutes (under 2h), hours (under 2d) or days.
pub(super) fn duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 7200.0 {
        format!("{}m", (s / 60.0).ceil().max(1.0))
    } else if s < 172_800.0 {
        format!("{}h", (s / 3600.0).ceil())
    } else {
        format!("{}d", (s / 86_400.0).ceil())
    }
}
