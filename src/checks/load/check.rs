//! One check of a job file: its `type`, exactly the arguments that type takes, thresholds.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::{Context, parse_duration, unknown_connection};
use crate::checks::model::{
    Check, CheckKind, CompareAs, DEFAULT_SAMPLES, Direction, Metric, ValidRules,
};
use crate::checks::threshold::{self, Threshold, describe_json, plain_number};
use crate::source::quote::quote_literal;

/// The check types, in the order the docs list them.
pub const TYPES: [&str; 12] = [
    "row_count",
    "missing",
    "invalid",
    "duplicate",
    "freshness",
    "aggregate",
    "reference",
    "metric",
    "compare",
    "failed_rows",
    "schema",
    "anomaly",
];

/// The eight threshold keys, as one YAML mapping's optional fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThresholds {
    must_be: Option<Value>,
    must_not_be: Option<Value>,
    must_be_greater_than: Option<Value>,
    must_be_greater_than_or_equal: Option<Value>,
    must_be_less_than: Option<Value>,
    must_be_less_than_or_equal: Option<Value>,
    must_be_between: Option<Value>,
    must_be_not_between: Option<Value>,
}

impl RawThresholds {
    fn pairs(&self) -> Vec<(&'static str, &Value)> {
        let all = [
            &self.must_be,
            &self.must_not_be,
            &self.must_be_greater_than,
            &self.must_be_greater_than_or_equal,
            &self.must_be_less_than,
            &self.must_be_less_than_or_equal,
            &self.must_be_between,
            &self.must_be_not_between,
        ];
        threshold::KEYS
            .iter()
            .zip(all)
            .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v)))
            .collect()
    }

    fn parse(&self, number: &dyn Fn(&Value) -> Option<f64>) -> Result<Threshold, String> {
        let mut t = Threshold::default();
        for (k, v) in self.pairs() {
            t.push_key(k, v, number)?;
        }
        Ok(t)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReferences {
    dataset: String,
    columns: Vec<String>,
    connection: Option<String>,
}

/// A check as written: every key any type takes; [`RawCheck::convert`] keeps its type's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    filter: Option<String>,
    samples: Option<usize>,
    warn: Option<RawThresholds>,
    // Thresholds (listed one by one: serde cannot flatten into a struct that refuses unknown keys).
    must_be: Option<Value>,
    must_not_be: Option<Value>,
    must_be_greater_than: Option<Value>,
    must_be_greater_than_or_equal: Option<Value>,
    must_be_less_than: Option<Value>,
    must_be_less_than_or_equal: Option<Value>,
    must_be_between: Option<Value>,
    must_be_not_between: Option<Value>,
    // Arguments.
    column: Option<String>,
    columns: Option<Vec<String>>,
    metric: Option<String>,
    missing_values: Option<Vec<Value>>,
    valid_values: Option<Vec<Value>>,
    valid_min: Option<Value>,
    valid_max: Option<Value>,
    valid_regex: Option<String>,
    valid_min_length: Option<u64>,
    valid_max_length: Option<u64>,
    not_in_future: Option<bool>,
    group_by: Option<Vec<String>>,
    expression: Option<String>,
    each: Option<RawThresholds>,
    references: Option<RawReferences>,
    query: Option<String>,
    against: Option<String>,
    against_connection: Option<String>,
    #[serde(rename = "as")]
    as_: Option<String>,
    required: Option<BTreeMap<String, String>>,
    forbidden: Option<Vec<String>>,
    fail_on_change: Option<bool>,
    of: Option<String>,
    sensitivity: Option<f64>,
    min_history: Option<usize>,
    training_window: Option<Value>,
    direction: Option<String>,
}

/// The arguments each type takes (besides name, filter, samples and thresholds).
fn arguments(kind: &str) -> &'static [&'static str] {
    match kind {
        "row_count" => &[],
        "missing" => &["column", "metric", "missing_values"],
        "invalid" => &[
            "column",
            "metric",
            "valid_values",
            "valid_min",
            "valid_max",
            "valid_regex",
            "valid_min_length",
            "valid_max_length",
            "not_in_future",
        ],
        "duplicate" => &["columns"],
        "freshness" => &["column"],
        "aggregate" => &["group_by", "expression", "each"],
        "reference" => &["columns", "references"],
        "metric" | "failed_rows" => &["query"],
        "compare" => &["query", "against", "against_connection", "as"],
        "schema" => &["required", "forbidden", "fail_on_change"],
        "anomaly" => &[
            "of",
            "sensitivity",
            "min_history",
            "training_window",
            "direction",
        ],
        _ => &[],
    }
}

impl RawCheck {
    fn thresholds(&self) -> RawThresholds {
        RawThresholds {
            must_be: self.must_be.clone(),
            must_not_be: self.must_not_be.clone(),
            must_be_greater_than: self.must_be_greater_than.clone(),
            must_be_greater_than_or_equal: self.must_be_greater_than_or_equal.clone(),
            must_be_less_than: self.must_be_less_than.clone(),
            must_be_less_than_or_equal: self.must_be_less_than_or_equal.clone(),
            must_be_between: self.must_be_between.clone(),
            must_be_not_between: self.must_be_not_between.clone(),
        }
    }

    /// The argument keys present.
    fn present(&self) -> Vec<&'static str> {
        let set = [
            ("column", self.column.is_some()),
            ("columns", self.columns.is_some()),
            ("metric", self.metric.is_some()),
            ("missing_values", self.missing_values.is_some()),
            ("valid_values", self.valid_values.is_some()),
            ("valid_min", self.valid_min.is_some()),
            ("valid_max", self.valid_max.is_some()),
            ("valid_regex", self.valid_regex.is_some()),
            ("valid_min_length", self.valid_min_length.is_some()),
            ("valid_max_length", self.valid_max_length.is_some()),
            ("not_in_future", self.not_in_future.is_some()),
            ("group_by", self.group_by.is_some()),
            ("expression", self.expression.is_some()),
            ("each", self.each.is_some()),
            ("references", self.references.is_some()),
            ("query", self.query.is_some()),
            ("against", self.against.is_some()),
            ("against_connection", self.against_connection.is_some()),
            ("as", self.as_.is_some()),
            ("required", self.required.is_some()),
            ("forbidden", self.forbidden.is_some()),
            ("fail_on_change", self.fail_on_change.is_some()),
            ("of", self.of.is_some()),
            ("sensitivity", self.sensitivity.is_some()),
            ("min_history", self.min_history.is_some()),
            ("training_window", self.training_window.is_some()),
            ("direction", self.direction.is_some()),
        ];
        set.iter().filter(|(_, on)| *on).map(|(k, _)| *k).collect()
    }

    /// The validated check. `has_dataset`/`has_window`: what the job gives it.
    pub fn convert(
        &self,
        line: u32,
        has_dataset: bool,
        has_window: bool,
        cx: &Context,
    ) -> Result<Check, String> {
        let t = self.kind.as_str();
        if !TYPES.contains(&t) {
            return Err(format!(
                "`type: {t}` is not a check type: use one of {}",
                TYPES.join(", ")
            ));
        }
        let label = self.name.clone().unwrap_or_else(|| t.to_owned());
        let fail = |m: String| format!("check `{label}` ({t}): {m}");
        let allowed = arguments(t);
        for key in self.present() {
            if !allowed.contains(&key) {
                return Err(fail(format!(
                    "`{key}` is not an argument of {t} checks; they take {}",
                    if allowed.is_empty() {
                        "none besides name, filter, samples and thresholds".to_owned()
                    } else {
                        allowed.join(", ")
                    }
                )));
            }
        }
        let kind = self.kind_of(t).map_err(&fail)?;
        let needs_dataset = !matches!(
            kind,
            CheckKind::Metric { .. }
                | CheckKind::Compare { .. }
                | CheckKind::FailedRows { .. }
                | CheckKind::Anomaly { .. }
        );
        if needs_dataset && !has_dataset {
            return Err(fail(
                "reads the job's dataset, and the job has none: add `dataset:` to the job".into(),
            ));
        }
        for sql in [&self.filter, &self.query, &self.against] {
            if !has_window
                && sql
                    .as_deref()
                    .is_some_and(|s| s.contains("{window_start}") || s.contains("{window_end}"))
            {
                return Err(fail(
                    "uses {window_start}/{window_end}: give the job a `window` (e.g. `window: \
                     1d`)"
                        .into(),
                ));
            }
        }
        for c in [
            &self.against_connection,
            &self.references.as_ref().and_then(|r| r.connection.clone()),
        ]
        .into_iter()
        .flatten()
        {
            if !cx.connections.contains(c) {
                return Err(fail(unknown_connection(c, cx)));
            }
        }
        let number: &dyn Fn(&Value) -> Option<f64> = match kind {
            // Freshness is in seconds; its thresholds may be written as durations.
            CheckKind::Freshness { .. } => &|v: &Value| {
                plain_number(v).or_else(|| parse_duration(v).ok().map(|d| d.as_secs_f64()))
            },
            _ => &plain_number,
        };
        let written = self.thresholds().parse(number).map_err(&fail)?;
        let warn = match &self.warn {
            Some(w) => {
                let w = w.parse(number).map_err(&fail)?;
                if w.is_empty() {
                    return Err(fail("`warn:` holds no threshold key".into()));
                }
                Some(w)
            }
            None => None,
        };
        let fail_t = match (&kind, written.is_empty()) {
            (CheckKind::Anomaly { .. }, false) | (CheckKind::Schema { .. }, false) => {
                return Err(fail(format!(
                    "takes no threshold keys ({t} checks fail on {}); remove them",
                    if t == "anomaly" {
                        "a z-score beyond `sensitivity`"
                    } else {
                        "any violation"
                    }
                )));
            }
            (CheckKind::Anomaly { .. } | CheckKind::Schema { .. }, true) => Threshold::zero(),
            (
                CheckKind::Freshness { .. } | CheckKind::Metric { .. } | CheckKind::Compare { .. },
                true,
            ) => {
                return Err(fail(format!(
                    "needs a threshold: e.g. `must_be_less_than: {}`",
                    if t == "freshness" { "1h" } else { "100" }
                )));
            }
            (CheckKind::RowCount, true) => Threshold::new(vec![threshold::Cond::Gt(0.0)]),
            (_, true) => Threshold::zero(),
            (_, false) => written,
        };
        if warn.is_some() && matches!(kind, CheckKind::Anomaly { .. } | CheckKind::Schema { .. }) {
            return Err(fail("takes no `warn:`".into()));
        }
        let name = match &self.name {
            Some(n) if n.trim().is_empty() => return Err(fail("`name` is empty".into())),
            Some(n) => n.clone(),
            None => kind.derived_name(),
        };
        Ok(Check {
            name,
            kind,
            filter: self.filter.clone(),
            fail: fail_t,
            warn,
            samples: self.samples.unwrap_or(DEFAULT_SAMPLES),
            line,
        })
    }

    fn kind_of(&self, t: &str) -> Result<CheckKind, String> {
        let need = |v: &Option<String>, key: &str, example: &str| {
            v.clone()
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| format!("needs `{key}` (e.g. `{key}: {example}`)"))
        };
        let need_list = |v: &Option<Vec<String>>, key: &str| {
            v.clone()
                .filter(|l| !l.is_empty())
                .ok_or_else(|| format!("needs `{key}`, a non-empty list (e.g. `{key}: [id]`)"))
        };
        let metric = || match self.metric.as_deref() {
            None | Some("count") => Ok(Metric::Count),
            Some("percent") => Ok(Metric::Percent),
            Some(o) => Err(format!(
                "`metric: {o}` is not a metric: use count or percent"
            )),
        };
        Ok(match t {
            "row_count" => CheckKind::RowCount,
            "missing" => CheckKind::Missing {
                column: need(&self.column, "column", "customer_id")?,
                missing_values: literals(
                    self.missing_values.as_deref().unwrap_or_default(),
                    "missing_values",
                )?,
                metric: metric()?,
            },
            "invalid" => {
                let n = |v: &Option<Value>, key: &str| -> Result<Option<f64>, String> {
                    v.as_ref()
                        .map(|v| {
                            plain_number(v).ok_or_else(|| {
                                format!("`{key}` takes a number, not {}", describe_json(v))
                            })
                        })
                        .transpose()
                };
                let rules = ValidRules {
                    values: literals(
                        self.valid_values.as_deref().unwrap_or_default(),
                        "valid_values",
                    )?,
                    min: n(&self.valid_min, "valid_min")?,
                    max: n(&self.valid_max, "valid_max")?,
                    regex: self.valid_regex.clone(),
                    min_length: self.valid_min_length,
                    max_length: self.valid_max_length,
                    not_in_future: self.not_in_future.unwrap_or(false),
                };
                if rules == ValidRules::default() {
                    return Err(
                        "needs a rule: one or more of valid_values, valid_min, valid_max, \
                                valid_regex, valid_min_length, valid_max_length, not_in_future"
                            .into(),
                    );
                }
                if let Some(re) = &rules.regex
                    && let Err(e) = regex_syntax(re)
                {
                    return Err(format!("`valid_regex` is not a regular expression: {e}"));
                }
                CheckKind::Invalid {
                    column: need(&self.column, "column", "status")?,
                    rules,
                    metric: metric()?,
                }
            }
            "duplicate" => CheckKind::Duplicate {
                columns: need_list(&self.columns, "columns")?,
            },
            "freshness" => CheckKind::Freshness {
                column: need(&self.column, "column", "updated_at")?,
            },
            "aggregate" => {
                let each = self
                    .each
                    .as_ref()
                    .ok_or("needs `each:` with the rule every group must meet (e.g. `each: {must_be_less_than_or_equal: 5}`)")?
                    .parse(&plain_number)?;
                if each.is_empty() {
                    return Err("`each:` holds no threshold key".into());
                }
                CheckKind::Aggregate {
                    group_by: need_list(&self.group_by, "group_by")?,
                    expression: need(&self.expression, "expression", "count(*)")?,
                    each,
                }
            }
            "reference" => {
                let columns = need_list(&self.columns, "columns")?;
                let r = self.references.as_ref().ok_or(
                    "needs `references: {dataset: ..., columns: [...]}` naming the dataset the \
                     values must exist in",
                )?;
                if r.columns.len() != columns.len() {
                    return Err(format!(
                        "`columns` has {} column(s) and `references.columns` {}: they pair up one \
                         by one",
                        columns.len(),
                        r.columns.len()
                    ));
                }
                CheckKind::Reference {
                    columns,
                    dataset: r.dataset.clone(),
                    ref_columns: r.columns.clone(),
                    connection: r.connection.clone(),
                }
            }
            "metric" => CheckKind::Metric {
                query: need(&self.query, "query", "SELECT sum(amount) FROM orders")?,
            },
            "failed_rows" => CheckKind::FailedRows {
                query: need(
                    &self.query,
                    "query",
                    "SELECT * FROM orders WHERE amount < 0",
                )?,
            },
            "compare" => CheckKind::Compare {
                query: need(&self.query, "query", "SELECT count(*) FROM orders")?,
                against: need(&self.against, "against", "SELECT count(*) FROM orders_copy")?,
                against_connection: self.against_connection.clone(),
                as_: match self.as_.as_deref() {
                    None | Some("ratio") => CompareAs::Ratio,
                    Some("difference") => CompareAs::Difference,
                    Some("percent_change") => CompareAs::PercentChange,
                    Some(o) => {
                        return Err(format!(
                            "`as: {o}` is not a comparison: use ratio, difference or percent_change"
                        ));
                    }
                },
            },
            "schema" => {
                let required = self.required.clone().unwrap_or_default();
                for (col, ty) in &required {
                    if crate::checks::schema::type_family(ty).is_none() {
                        return Err(format!(
                            "`required: {{{col}: {ty}}}`: `{ty}` is not a type walaudit knows: use \
                             a Postgres type name such as integer, bigint, text, numeric, \
                             boolean, date, timestamptz"
                        ));
                    }
                }
                let s = CheckKind::Schema {
                    required,
                    forbidden: self.forbidden.clone().unwrap_or_default(),
                    fail_on_change: self.fail_on_change.unwrap_or(false),
                };
                if matches!(&s, CheckKind::Schema { required, forbidden, fail_on_change: false } if required.is_empty() && forbidden.is_empty())
                {
                    return Err("needs `required`, `forbidden` or `fail_on_change: true`".into());
                }
                s
            }
            "anomaly" => {
                let sensitivity = self.sensitivity.unwrap_or(3.0);
                if !(sensitivity.is_finite() && sensitivity > 0.0) {
                    return Err(format!(
                        "`sensitivity` is a z-score above 0, not {sensitivity}"
                    ));
                }
                let min_history = self.min_history.unwrap_or(7);
                if min_history < 2 {
                    return Err(
                        "`min_history` must be at least 2 (a standard deviation needs two points)"
                            .into(),
                    );
                }
                let training_window = match &self.training_window {
                    Some(v) => parse_duration(v).map_err(|e| format!("`training_window` {e}"))?,
                    None => Duration::from_secs(14 * 86_400),
                };
                CheckKind::Anomaly {
                    of: need(&self.of, "of", "row_count")?,
                    sensitivity,
                    min_history,
                    training_window,
                    direction: match self.direction.as_deref() {
                        None | Some("both") => Direction::Both,
                        Some("up") => Direction::Up,
                        Some("down") => Direction::Down,
                        Some(o) => {
                            return Err(format!(
                                "`direction: {o}` is not a direction: use both, up or down"
                            ));
                        }
                    },
                }
            }
            _ => unreachable!("type checked against TYPES"),
        })
    }
}

/// YAML scalars as SQL literals: numbers as they are, text quoted; `null` and lists refused.
fn literals(values: &[Value], key: &str) -> Result<Vec<String>, String> {
    values
        .iter()
        .map(|v| match v {
            Value::Number(n) => Ok(n.to_string()),
            Value::String(s) => Ok(quote_literal(s)),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(format!(
                "`{key}` holds {}: list numbers, text or booleans",
                describe_json(other)
            )),
        })
        .collect()
}

/// A cheap syntax check of a POSIX-ish regular expression: balanced brackets and parentheses.
/// The database has the last word; this catches typos before a run does.
fn regex_syntax(re: &str) -> Result<(), String> {
    let (mut parens, mut in_class, mut escaped) = (0i32, false, false);
    for c in re.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '(' if !in_class => parens += 1,
            ')' if !in_class => {
                parens -= 1;
                if parens < 0 {
                    return Err(format!("`{re}` closes a parenthesis it never opened"));
                }
            }
            _ => {}
        }
    }
    if in_class {
        return Err(format!("`{re}` opens a `[` class it never closes"));
    }
    if parens != 0 {
        return Err(format!("`{re}` opens a parenthesis it never closes"));
    }
    Ok(())
}
