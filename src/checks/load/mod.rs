//! Job files: YAML → validated [`Job`]s, all or nothing.
//!
//! ```text
//!  *.yml / *.yaml below the checks dir (sorted) ─► serde-saphyr (typed, unknown keys refused,
//!  every job and check with its line) ─► per check: its type's arguments (check.rs)
//!  ─► across files: unique names, known connections, depends_on targets, no cycles ─► jobs
//! ```
//!
//! Every error names the file, the line, the key and what is allowed; all errors of all files
//! are reported at once, and a set with any error loads nothing.

mod check;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

use super::model::{self, Job, Origin, Severity};

pub use check::RawCheck;

/// One problem in a job file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    /// The file (or `api`).
    pub file: String,
    /// 1-based; 0 when the problem is the file itself.
    pub line: u32,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

/// Every problem of a set of job files; none of its jobs were loaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} problem{} in the job files (nothing was loaded; fix {} and run `walaudit check \
             validate`):",
            if n == 1 { "" } else { "s" },
            if n == 1 { "it" } else { "them" }
        )?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// What a job may refer to besides itself.
#[derive(Clone, Debug)]
pub struct Context {
    /// Connection names jobs may use: `lake`, `source` and the config's `[connections.*]`.
    pub connections: BTreeSet<String>,
}

impl Context {
    /// `lake`, `source` and `extra`.
    pub fn new<I: IntoIterator<Item = String>>(extra: I) -> Context {
        let mut connections: BTreeSet<String> = extra.into_iter().collect();
        connections.insert(model::LAKE.into());
        connections.insert(model::SOURCE.into());
        Context { connections }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    jobs: Option<Vec<Spanned<RawJob>>>,
    /// Read by the reconciliation loader ([`crate::reconcile::load`]).
    #[serde(default)]
    reconciliations: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    name: String,
    description: Option<String>,
    connection: Option<String>,
    dataset: Option<String>,
    filter: Option<String>,
    window: Option<Value>,
    incremental: Option<bool>,
    schedule: Option<String>,
    timezone: Option<String>,
    timeout: Option<Value>,
    severity: Option<String>,
    depends_on: Option<Vec<String>>,
    allow_full_scan: Option<bool>,
    checks: Vec<Spanned<RawCheck>>,
}

/// Loads every `*.yml`/`*.yaml` file below `dir`.
pub fn load_dir(dir: &Path, cx: &Context) -> Result<Vec<Job>, LoadErrors> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    collect_files(dir, &mut files, &mut errors);
    if files.is_empty() && errors.is_empty() {
        errors.push(LoadError {
            file: dir.display().to_string(),
            line: 0,
            message: "holds no job files: put jobs in *.yml or *.yaml files below it (`walaudit \
                      check suggest --dataset TABLE` writes one to start from)"
                .into(),
        });
    }
    let sources = read_files(files, &mut errors);
    merge(load_sources(&sources, cx), errors)
}

/// The texts of the job files below `dir`, sorted by path (files that cannot be read are left
/// out: loading them reports them).
pub fn read_dir_sources(dir: &Path) -> Vec<(Origin, String)> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    collect_files(dir, &mut files, &mut errors);
    read_files(files, &mut errors)
}

/// The texts of `files`, sorted by path; a file that cannot be read is an error.
pub(crate) fn read_files(
    mut files: Vec<PathBuf>,
    errors: &mut Vec<LoadError>,
) -> Vec<(Origin, String)> {
    files.sort();
    let mut sources = Vec::new();
    for path in files {
        match std::fs::read_to_string(&path) {
            Ok(text) => sources.push((Origin::File(path.display().to_string()), text)),
            Err(e) => errors.push(LoadError {
                file: path.display().to_string(),
                line: 0,
                message: format!("cannot be read ({e}): check its permissions"),
            }),
        }
    }
    sources
}

/// What loading found, with the errors met before it (reading the files).
pub(crate) fn merge<T>(
    loaded: Result<Vec<T>, LoadErrors>,
    mut errors: Vec<LoadError>,
) -> Result<Vec<T>, LoadErrors> {
    match loaded {
        Ok(all) if errors.is_empty() => Ok(all),
        Ok(_) => Err(LoadErrors(errors)),
        Err(LoadErrors(more)) => {
            errors.extend(more);
            Err(LoadErrors(errors))
        }
    }
}

pub(crate) fn collect_files(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<LoadError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(LoadError {
                file: dir.display().to_string(),
                line: 0,
                message: format!(
                    "cannot be listed ({e}): pass the directory holding the job files with \
                     --checks DIR or set checks.dir"
                ),
            });
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, files, errors);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yml" | "yaml")
        ) {
            files.push(path);
        }
    }
}

/// Loads job files given as `(origin, text)`; names must be unique across all of them.
pub fn load_sources(sources: &[(Origin, String)], cx: &Context) -> Result<Vec<Job>, LoadErrors> {
    let mut jobs = Vec::new();
    let mut errors = Vec::new();
    // Names of every job written, loaded or not, so that a broken job is not also reported
    // as a missing dependency.
    let mut written = BTreeSet::new();
    for (origin, text) in sources {
        let file = origin_file(origin);
        let raw: RawFile = match serde_saphyr::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                errors.push(yaml_error(&file, &e));
                continue;
            }
        };
        if raw.jobs.is_none() && raw.reconciliations.is_none() {
            errors.push(LoadError {
                file: file.clone(),
                line: 0,
                message: "holds neither `jobs:` nor `reconciliations:`: start the file with                           one of them (a list)"
                    .into(),
            });
        }
        for job in raw.jobs.unwrap_or_default() {
            written.insert(job.value.name.clone());
            let line = line_of(&job.referenced);
            match convert_job(job.value, line, origin, cx) {
                Ok(job) => jobs.push(job),
                Err(mut e) => errors.append(&mut e),
            }
        }
    }
    cross_check(&jobs, &written, &mut errors);
    if errors.is_empty() {
        Ok(jobs)
    } else {
        errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        Err(LoadErrors(errors))
    }
}

pub(crate) fn origin_file(origin: &Origin) -> String {
    match origin {
        Origin::File(path) => path.clone(),
        Origin::Api => "api".into(),
    }
}

pub(crate) fn line_of(loc: &serde_saphyr::Location) -> u32 {
    u32::try_from(loc.line()).unwrap_or(u32::MAX)
}

pub(crate) fn yaml_error(file: &str, e: &serde_saphyr::Error) -> LoadError {
    let text = e.without_snippet().to_string();
    // The location is reported apart; drop the text's " at line N, column M" tail.
    let message = match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    };
    let hint = if message.contains("unknown field") {
        ": check the spelling of the key"
    } else if message.contains("missing field") {
        ": add the key"
    } else {
        ""
    };
    LoadError {
        file: file.to_owned(),
        line: e.location().map(|l| line_of(&l)).unwrap_or(0),
        message: format!("{message}{hint}"),
    }
}

/// `90s`, `15m`, `2h`, `3d`, or a number of seconds.
pub fn parse_duration(v: &Value) -> Result<Duration, String> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => {
            return Err(format!(
                "takes a duration (e.g. 90s, 15m, 2h, 3d), not {}",
                super::threshold::describe_json(other)
            ));
        }
    };
    crate::config::parse_duration(&text)
}

fn convert_job(
    raw: RawJob,
    line: u32,
    origin: &Origin,
    cx: &Context,
) -> Result<Job, Vec<LoadError>> {
    let file = origin_file(origin);
    let mut errors = Vec::new();
    let mut err = |line: u32, message: String| {
        errors.push(LoadError {
            file: file.clone(),
            line,
            message: format!("job `{}`: {message}", raw.name),
        })
    };
    if !valid_name(&raw.name) {
        err(
            line,
            "the name may only hold letters, digits, `_`, `.` and `-` (1 to 200 of them)".into(),
        );
    }
    let connection = raw.connection.clone().unwrap_or_else(|| model::LAKE.into());
    if !cx.connections.contains(&connection) {
        err(line, unknown_connection(&connection, cx));
    }
    let duration = |key: &str, v: &Option<Value>, err: &mut dyn FnMut(u32, String)| {
        v.as_ref().and_then(|v| match parse_duration(v) {
            Ok(d) => Some(d),
            Err(e) => {
                err(line, format!("`{key}` {e}"));
                None
            }
        })
    };
    let window = duration("window", &raw.window, &mut err);
    let timeout = duration("timeout", &raw.timeout, &mut err).unwrap_or(model::DEFAULT_TIMEOUT);
    if timeout > model::MAX_TIMEOUT {
        err(
            line,
            format!(
                "`timeout` is {}s; a job may run at most 10m: split the job or narrow its \
                 dataset with a filter or a window",
                timeout.as_secs()
            ),
        );
    } else if timeout.is_zero() {
        err(line, "`timeout` must be more than 0s".into());
    }
    let severity = one_of("severity", raw.severity.as_deref(), &SEVERITIES).unwrap_or_else(|e| {
        err(line, e);
        Severity::High
    });
    let timezone = raw.timezone.clone().unwrap_or_else(|| "UTC".into());
    if let Some(expr) = &raw.schedule
        && let Err(e) = super::schedule_check(expr, &timezone)
    {
        err(line, e);
    } else if raw.schedule.is_none() && raw.timezone.is_some() {
        err(line, "`timezone` needs a `schedule`".into());
    }
    let incremental = raw.incremental.unwrap_or(false);
    if incremental && connection != model::LAKE {
        err(
            line,
            format!(
                "`incremental: true` reads lake change tables by `_lsn`; connection \
                 `{connection}` is not the lake: remove it or use `connection: lake`"
            ),
        );
    }
    let mut checks = Vec::new();
    let mut names = HashMap::new();
    let needs_window = |sql: &Option<String>| {
        sql.as_deref()
            .is_some_and(|s| s.contains("{window_start}") || s.contains("{window_end}"))
    };
    if raw.window.is_none() && needs_window(&raw.filter) {
        err(line, "the filter uses {window_start}/{window_end}: give the job a `window` (e.g. `window: 1d`)".into());
    }
    if raw.checks.is_empty() {
        err(
            line,
            "`checks` is empty: a job needs at least one check".into(),
        );
    }
    for c in &raw.checks {
        let cline = line_of(&c.referenced);
        match c
            .value
            .convert(cline, raw.dataset.is_some(), raw.window.is_some(), cx)
        {
            Ok(check) => {
                if let Some(prev) = names.insert(check.name.clone(), cline) {
                    err(
                        cline,
                        format!(
                            "two checks are named `{}` (the other is on line {prev}): give one \
                             a `name`",
                            check.name
                        ),
                    );
                }
                checks.push(check);
            }
            Err(e) => err(cline, e),
        }
    }
    for check in &checks {
        if let model::CheckKind::Anomaly { of, .. } = &check.kind {
            match checks.iter().find(|c| &c.name == of) {
                None => err(
                    check.line,
                    format!(
                        "check `{}`: `of: {of}` names no check of this job; checks here: {}",
                        check.name,
                        checks
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
                Some(c) if matches!(c.kind, model::CheckKind::Anomaly { .. }) => err(
                    check.line,
                    format!(
                        "check `{}`: an anomaly check cannot watch another anomaly check",
                        check.name
                    ),
                ),
                _ => {}
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Job {
        name: raw.name,
        description: raw.description,
        connection,
        dataset: raw.dataset.unwrap_or_default(),
        filter: raw.filter,
        window,
        incremental,
        schedule: raw.schedule,
        timezone,
        timeout,
        severity,
        depends_on: raw.depends_on.unwrap_or_default(),
        allow_full_scan: raw.allow_full_scan.unwrap_or(false),
        checks,
        origin: origin.clone(),
        line,
    })
}

/// The severities, the default first.
pub(crate) const SEVERITIES: [(&str, Severity); 3] = [
    ("high", Severity::High),
    ("critical", Severity::Critical),
    ("low", Severity::Low),
];

/// The choice named `value` of key `key` (the first when absent), or what is allowed.
pub(crate) fn one_of<T: Copy>(
    key: &str,
    value: Option<&str>,
    choices: &[(&str, T)],
) -> Result<T, String> {
    let Some(v) = value else {
        return Ok(choices[0].1);
    };
    choices
        .iter()
        .find(|(name, _)| *name == v)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            format!(
                "`{key}: {v}` is not allowed: use one of {}",
                names.join(", ")
            )
        })
}

/// `[A-Za-z0-9_.-]+`, at most 200 characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

pub(crate) fn unknown_connection(name: &str, cx: &Context) -> String {
    format!(
        "connection `{name}` is not defined: use one of {} or add a [connections.{name}] table \
         with its url to the config",
        cx.connections
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Names unique across files; `depends_on` names existing jobs, without cycles.
fn cross_check(jobs: &[Job], written: &BTreeSet<String>, errors: &mut Vec<LoadError>) {
    let mut seen: BTreeMap<&str, &Job> = BTreeMap::new();
    for job in jobs {
        if let Some(first) = seen.insert(&job.name, job) {
            errors.push(LoadError {
                file: origin_file(&job.origin),
                line: job.line,
                message: format!(
                    "job `{}` is defined twice (also at {}): job names are unique across all \
                     files",
                    job.name,
                    first.place()
                ),
            });
        }
    }
    for job in jobs {
        for dep in &job.depends_on {
            if !written.contains(dep) {
                errors.push(LoadError {
                    file: origin_file(&job.origin),
                    line: job.line,
                    message: format!(
                        "job `{}`: `depends_on` names `{dep}`, which is no job: check the name",
                        job.name
                    ),
                });
            }
        }
    }
    if let Some(cycle) = find_cycle(jobs) {
        let job = jobs
            .iter()
            .find(|j| j.name == cycle[0])
            .expect("a cycle is of loaded jobs");
        errors.push(LoadError {
            file: origin_file(&job.origin),
            line: job.line,
            message: format!(
                "`depends_on` forms a cycle: {}: remove one of these dependencies",
                cycle.join(" → ")
            ),
        });
    }
}

fn find_cycle(jobs: &[Job]) -> Option<Vec<String>> {
    // The first definition of a name counts (a second one is reported apart).
    let mut deps: HashMap<&str, &[String]> = HashMap::new();
    for j in jobs {
        deps.entry(j.name.as_str())
            .or_insert(j.depends_on.as_slice());
    }
    // 0 unvisited, 1 on the stack, 2 done.
    let mut state: HashMap<&str, u8> = HashMap::new();
    fn visit<'a>(
        n: &'a str,
        deps: &HashMap<&'a str, &'a [String]>,
        state: &mut HashMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let from = stack.iter().position(|s| *s == n).unwrap_or(0);
                let mut cycle: Vec<String> = stack[from..].iter().map(|s| s.to_string()).collect();
                cycle.push(n.to_owned());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(n, 1);
        stack.push(n);
        for d in deps.get(n).copied().unwrap_or_default() {
            if deps.contains_key(d.as_str())
                && let Some(c) = visit(d, deps, state, stack)
            {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    let mut names: Vec<&str> = deps.keys().copied().collect();
    names.sort_unstable();
    for n in names {
        let mut stack = Vec::new();
        if let Some(c) = visit(n, &deps, &mut state, &mut stack) {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests;
