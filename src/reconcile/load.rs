//! Reconciliations from the job files (`reconciliations:`, beside `jobs:`), all or nothing,
//! every error with its file and line, like the jobs' loader.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use serde_saphyr::Spanned;

use super::model::{self, DiffMode, Pipeline, Reconciliation, Side};
use crate::checks::load::{
    Context, LoadError, LoadErrors, SEVERITIES, collect_files, line_of, merge, one_of, origin_file,
    parse_duration, read_files, unknown_connection, valid_name, yaml_error,
};
use crate::checks::model::{Origin, Severity};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    #[allow(dead_code)]
    jobs: Option<IgnoredAny>,
    #[serde(default)]
    reconciliations: Vec<Spanned<RawReconciliation>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSide {
    connection: String,
    dataset: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReconciliation {
    name: String,
    description: Option<String>,
    pipeline: Option<String>,
    source: RawSide,
    target: RawSide,
    key: Vec<String>,
    columns: Option<Vec<String>>,
    column_map: Option<BTreeMap<String, String>>,
    time_column: Option<String>,
    window: Option<Value>,
    lookback: Option<Value>,
    grace: Option<Value>,
    tolerance: Option<u64>,
    diff: Option<String>,
    max_diff_keys: Option<usize>,
    schedule: Option<String>,
    timezone: Option<String>,
    timeout: Option<Value>,
    severity: Option<String>,
    write_audit_to: Option<Value>,
}

/// Every reconciliation in the `*.yml`/`*.yaml` files below `dir`.
pub fn load_dir(dir: &Path, cx: &Context) -> Result<Vec<Reconciliation>, LoadErrors> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    collect_files(dir, &mut files, &mut errors);
    let sources = read_files(files, &mut errors);
    merge(load_sources(&sources, cx), errors)
}

/// Reconciliations of job files given as `(origin, text)`; names unique across them.
pub fn load_sources(
    sources: &[(Origin, String)],
    cx: &Context,
) -> Result<Vec<Reconciliation>, LoadErrors> {
    let mut all: Vec<Reconciliation> = Vec::new();
    let mut errors = Vec::new();
    // Every name written, loaded or not: a second definition is reported either way.
    let mut seen: BTreeMap<String, (String, u32)> = BTreeMap::new();
    for (origin, text) in sources {
        let file = origin_file(origin);
        let raw: RawFile = match serde_saphyr::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                errors.push(yaml_error(&file, &e));
                continue;
            }
        };
        for r in raw.reconciliations {
            let line = line_of(&r.referenced);
            if let Some((f, first)) = seen.get(&r.value.name) {
                errors.push(LoadError {
                    file: file.clone(),
                    line,
                    message: format!(
                        "reconciliation `{}` is defined twice (also at {f}:{first}): names are \
                         unique across all files",
                        r.value.name
                    ),
                });
            }
            seen.insert(r.value.name.clone(), (file.clone(), line));
            match convert(r.value, line, origin, cx) {
                Ok(r) => all.push(r),
                Err(mut e) => errors.append(&mut e),
            }
        }
    }
    if errors.is_empty() {
        Ok(all)
    } else {
        errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        Err(LoadErrors(errors))
    }
}

fn convert(
    raw: RawReconciliation,
    line: u32,
    origin: &Origin,
    cx: &Context,
) -> Result<Reconciliation, Vec<LoadError>> {
    let file = origin_file(origin);
    let mut errors = Vec::new();
    let mut err = |message: String| {
        errors.push(LoadError {
            file: file.clone(),
            line,
            message: format!("reconciliation `{}`: {message}", raw.name),
        })
    };
    if !valid_name(&raw.name) {
        err("the name may only hold letters, digits, `_`, `.` and `-` (1 to 200 of them)".into());
    }
    for side in [&raw.source, &raw.target] {
        if !cx.connections.contains(&side.connection) {
            err(unknown_connection(&side.connection, cx));
        }
        if side.dataset.trim().is_empty() {
            err("a side's `dataset` is empty: name a table, e.g. public.orders".into());
        }
    }
    let mut duration = |key: &str, v: &Option<Value>, default| match v {
        None => default,
        Some(v) => parse_duration(v).unwrap_or_else(|e| {
            err(format!("`{key}` {e}"));
            default
        }),
    };
    let window = duration("window", &raw.window, model::DEFAULT_WINDOW);
    let lookback = duration("lookback", &raw.lookback, model::DEFAULT_LOOKBACK);
    let grace = duration("grace", &raw.grace, model::DEFAULT_GRACE);
    let timeout = duration("timeout", &raw.timeout, model::DEFAULT_TIMEOUT);
    let pipeline = one_of(
        "pipeline",
        raw.pipeline.as_deref(),
        &[
            ("historical", Pipeline::Historical),
            ("incremental", Pipeline::Incremental),
        ],
    )
    .map_err(&mut err)
    .unwrap_or(Pipeline::Historical);
    let diff = one_of(
        "diff",
        raw.diff.as_deref(),
        &[
            ("on_mismatch", DiffMode::OnMismatch),
            ("always", DiffMode::Always),
            ("never", DiffMode::Never),
        ],
    )
    .map_err(&mut err)
    .unwrap_or(DiffMode::OnMismatch);
    let severity = one_of("severity", raw.severity.as_deref(), &SEVERITIES)
        .map_err(&mut err)
        .unwrap_or(Severity::High);
    if window.is_zero() {
        err("`window` must be more than 0s".into());
    }
    if timeout.is_zero() || timeout > crate::checks::model::MAX_TIMEOUT {
        err("`timeout` must be more than 0s and at most 10m".into());
    }
    if pipeline == Pipeline::Incremental && lookback < window {
        err(format!(
            "`lookback` ({}s) is shorter than one `window` ({}s): an incremental run would judge \
             no window; make the lookback at least one window",
            lookback.as_secs(),
            window.as_secs()
        ));
    }
    if pipeline == Pipeline::Incremental && raw.time_column.is_none() {
        err("an incremental pipeline judges recent windows: give it a `time_column`".into());
    }
    if raw.key.is_empty() {
        err("`key` is empty: name the column(s) that identify a row, e.g. key: [id]".into());
    }
    let mut seen = BTreeSet::new();
    for k in &raw.key {
        if !seen.insert(k) {
            err(format!("`key` names `{k}` twice"));
        }
    }
    if let Some(cols) = &raw.columns {
        for c in cols {
            if raw.key.contains(c) {
                err(format!(
                    "`columns` lists the key column `{c}`: keys are always compared; remove it"
                ));
            }
        }
    }
    if raw.write_audit_to.is_some() {
        err(
            "`write_audit_to` is not built yet: the audit records are kept in the lake's \
             _walaudit/reconciliations; remove the key"
                .into(),
        );
    }
    let timezone = raw.timezone.clone().unwrap_or_else(|| "UTC".into());
    if let Some(expr) = &raw.schedule
        && let Err(e) = crate::checks::schedule_check(expr, &timezone)
    {
        err(e);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Reconciliation {
        name: raw.name,
        description: raw.description,
        pipeline,
        source: Side {
            connection: raw.source.connection,
            dataset: raw.source.dataset,
        },
        target: Side {
            connection: raw.target.connection,
            dataset: raw.target.dataset,
        },
        key: raw.key,
        columns: raw.columns,
        column_map: raw.column_map.unwrap_or_default(),
        time_column: raw.time_column,
        window,
        lookback,
        grace,
        tolerance: raw.tolerance.unwrap_or(0),
        diff,
        max_diff_keys: raw.max_diff_keys.unwrap_or(model::DEFAULT_MAX_DIFF_KEYS),
        schedule: raw.schedule,
        timezone,
        timeout,
        severity,
        origin: origin.clone(),
        line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Vec<Reconciliation>, LoadErrors> {
        let cx = Context::new(["wh".to_owned()]);
        load_sources(&[(Origin::File("r.yml".into()), text.into())], &cx)
    }

    const GOOD: &str = "reconciliations:
  - name: orders
    pipeline: incremental
    source: {connection: source, dataset: public.orders}
    target: {connection: wh, dataset: analytics.orders}
    key: [id]
    column_map: {amount: total}
    time_column: updated_at
    window: 30m
    lookback: 2h
    grace: 5m
    tolerance: 2
    diff: always
    schedule: \"*/30 * * * *\"
";

    #[test]
    fn a_full_definition_loads_with_its_defaults() {
        let r = &load(GOOD).unwrap()[0];
        assert_eq!(r.pipeline, Pipeline::Incremental);
        assert_eq!(r.window.as_secs(), 1800);
        assert_eq!((r.tolerance, r.diff), (2, DiffMode::Always));
        assert_eq!(r.target_column("amount"), "total");
        assert_eq!(r.target_column("id"), "id");
        assert_eq!(r.max_diff_keys, model::DEFAULT_MAX_DIFF_KEYS);
        assert_eq!((r.line, r.severity), (2, Severity::High));
    }

    #[test]
    fn every_problem_is_reported_with_its_line_and_fix() {
        let bad = "reconciliations:
  - name: a
    source: {connection: nowhere, dataset: t}
    target: {connection: wh, dataset: t}
    key: []
    pipeline: sometimes
    write_audit_to: {connection: wh, table: audit}
  - name: b
    pipeline: incremental
    source: {connection: source, dataset: t}
    target: {connection: wh, dataset: t}
    key: [id, id]
    window: 1h
    lookback: 30m
    schedule: \"61 * * * *\"
  - name: b
    source: {connection: source, dataset: t}
    target: {connection: wh, dataset: t}
    key: [id]
    colums: [x]
";
        let errs = load(bad).unwrap_err().0;
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        let has = |line: u32, what: &str| {
            assert!(
                errs.iter()
                    .any(|e| e.line == line && e.message.contains(what)),
                "no `{what}` on line {line}: {text:#?}"
            )
        };
        // A misspelt key fails the file's parse: reported alone, with its line.
        assert_eq!(errs.len(), 1, "{text:#?}");
        has(20, "unknown field `colums`");
        let errs = load(&bad.replace("    colums: [x]\n", "")).unwrap_err().0;
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        let has = |line: u32, what: &str| {
            assert!(
                errs.iter()
                    .any(|e| e.line == line && e.message.contains(what)),
                "no `{what}` on line {line}: {text:#?}"
            )
        };
        has(2, "connection `nowhere` is not defined");
        has(2, "`key` is empty");
        has(
            2,
            "`pipeline: sometimes` is not allowed: use one of historical, incremental",
        );
        has(2, "`write_audit_to` is not built yet");
        has(8, "`key` names `id` twice");
        has(8, "`lookback` (1800s) is shorter than one `window`");
        has(
            8,
            "an incremental pipeline judges recent windows: give it a `time_column`",
        );
        has(16, "reconciliation `b` is defined twice (also at r.yml:8)");
        assert!(
            errs.iter().any(|e| e.line == 8 && e.message.contains("61")),
            "{text:#?}"
        );
    }
}
