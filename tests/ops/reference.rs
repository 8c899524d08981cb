//! The metrics reference in dashboards/README.md lists exactly the metric names src/metrics.rs
//! defines, each with the type and the labels the engine's exposition gives it.

use std::collections::BTreeSet;

use super::{defined_metric_names, registry_families, repo};

const REFERENCE: &str = "dashboards/README.md";
const SECTION: &str = "## Metrics reference";
/// The one row that is not a name of src/metrics.rs: the process collector's metrics.
const PROCESS_ROW: &str = "process_*";

/// One row of the reference table.
#[derive(Debug)]
struct Row {
    name: String,
    kind: String,
    labels: Vec<String>,
}

/// The rows of the first table below [`SECTION`] in `text`.
fn reference_rows(text: &str) -> Vec<Row> {
    let section = text
        .split_once(&format!("\n{SECTION}\n"))
        .unwrap_or_else(|| panic!("{REFERENCE} has no section {SECTION:?}"))
        .1;
    let table = section
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        // The header and the |---| line.
        .skip(2);
    table
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            assert!(
                cells.len() >= 3,
                "{REFERENCE}: a row without 4 cells: {line}"
            );
            Row {
                name: cells[0].trim_matches('`').to_owned(),
                kind: cells[1].to_owned(),
                // "`table`, `outcome` = `copied` / `skipped`": the first word of each part.
                labels: cells[2]
                    .split(',')
                    .filter_map(|part| part.split('`').nth(1))
                    .map(str::to_owned)
                    .collect(),
            }
        })
        .collect()
}

/// What is wrong between the reference rows and the names src/metrics.rs defines (empty when
/// they agree).
fn name_differences(rows: &[Row], defined: &[String]) -> Vec<String> {
    let listed: BTreeSet<&str> = rows
        .iter()
        .map(|r| r.name.as_str())
        .filter(|n| *n != PROCESS_ROW)
        .collect();
    let defined: BTreeSet<&str> = defined.iter().map(String::as_str).collect();
    let mut problems = Vec::new();
    for name in defined.difference(&listed) {
        problems.push(format!(
            "{name} is defined in src/metrics.rs but missing from {REFERENCE}"
        ));
    }
    for name in listed.difference(&defined) {
        problems.push(format!(
            "{name} is listed in {REFERENCE} but not defined in src/metrics.rs"
        ));
    }
    let mut seen = BTreeSet::new();
    for row in rows {
        if !seen.insert(row.name.as_str()) {
            problems.push(format!("{} is listed twice in {REFERENCE}", row.name));
        }
    }
    problems
}

#[test]
fn the_metrics_reference_lists_exactly_the_defined_names() {
    let text = std::fs::read_to_string(repo().join(REFERENCE)).unwrap();
    let rows = reference_rows(&text);
    let problems = name_differences(&rows, &defined_metric_names());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        rows.iter().any(|r| r.name == PROCESS_ROW),
        "{REFERENCE} lists the process collector's metrics as {PROCESS_ROW}"
    );

    // Type and labels as the engine exposes them.
    let families = registry_families();
    let mut problems = Vec::new();
    for row in rows.iter().filter(|r| r.name != PROCESS_ROW) {
        let family = families.iter().find(|f| f.name == row.name).unwrap();
        if row.kind != family.kind {
            problems.push(format!(
                "{}: {REFERENCE} says {}, the exposition {}",
                row.name, row.kind, family.kind
            ));
        }
        let listed: BTreeSet<&String> = row.labels.iter().collect();
        let exposed: BTreeSet<&String> = family.labels.iter().collect();
        if listed != exposed {
            problems.push(format!(
                "{}: {REFERENCE} lists labels {listed:?}, the exposition has {exposed:?}",
                row.name
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_missing_or_extra_name_is_named() {
    let text = "intro\n\n## Metrics reference\n\nNames.\n\n\
                | metric | type | labels | meaning |\n|---|---|---|---|\n\
                | `walaudit_a_total` | counter | `table`, `op` = `c` / `u` | a |\n\
                | `walaudit_extra` | gauge | | x |\n\
                | `process_*` | | | process |\n\n## Next\n\n| `walaudit_b` | gauge | | |\n";
    let rows = reference_rows(text);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0].labels, ["table", "op"]);
    let defined = ["walaudit_a_total".to_owned(), "walaudit_b".to_owned()];
    assert_eq!(
        name_differences(&rows, &defined),
        [
            "walaudit_b is defined in src/metrics.rs but missing from dashboards/README.md",
            "walaudit_extra is listed in dashboards/README.md but not defined in src/metrics.rs",
        ]
    );
}
