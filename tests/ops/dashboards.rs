//! The dashboards are valid Grafana dashboards, share their variables, take their datasource
//! from `$datasource`, and use only metric names the engine defines.

use std::collections::{BTreeSet, HashSet};

use serde_json::{Value, json};

use super::{
    PENDING_METRICS, PROMETHEUS_METRICS, dashboards, label_values, metric_names, panel_queries,
    panels, registry_metric_names, repo,
};

const DATASOURCE: &str = "${datasource}";

fn validator() -> jsonschema::Validator {
    let path = repo().join("tests/ops/grafana-dashboard.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::draft7::new(&schema).expect("the dashboard schema compiles")
}

fn schema_errors(validator: &jsonschema::Validator, dashboard: &Value) -> Vec<String> {
    validator
        .iter_errors(dashboard)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn dashboards_validate_against_the_grafana_schema() {
    let validator = validator();
    for (name, dashboard) in dashboards() {
        let errors = schema_errors(&validator, &dashboard);
        assert!(errors.is_empty(), "{name}:\n{}", errors.join("\n"));
        let version = dashboard["schemaVersion"].as_u64().unwrap();
        assert!(
            version >= 38,
            "{name}: schemaVersion {version} < 38 (Grafana 10)"
        );

        // The schema is strict: a typo in a key or a missing required key is caught.
        let mut typo = dashboard.clone();
        typo["panels"][1]["fieldconfig"] = json!({});
        assert!(
            !schema_errors(&validator, &typo).is_empty(),
            "{name}: typo accepted"
        );
        let mut missing = dashboard.clone();
        missing.as_object_mut().unwrap().remove("templating");
        assert!(!schema_errors(&validator, &missing).is_empty(), "{name}");
    }
}

#[test]
fn dashboards_have_the_variables_and_use_the_datasource_variable() {
    let known: HashSet<String> = registry_metric_names().into_iter().collect();
    let pending: HashSet<&str> = PENDING_METRICS.iter().map(|(name, _)| *name).collect();
    let mut uids = HashSet::new();
    for (name, dashboard) in dashboards() {
        let uid = dashboard["uid"].as_str().unwrap_or_default();
        assert!(
            !uid.is_empty() && uids.insert(uid.to_owned()),
            "{name}: uid {uid:?}"
        );
        let vars: Vec<&Value> = dashboard["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .collect();
        let var = |var: &str| {
            *vars
                .iter()
                .find(|v| v["name"] == var)
                .unwrap_or_else(|| panic!("{name}: no ${var} variable"))
        };
        let datasource = var("datasource");
        assert_eq!(datasource["type"], "datasource", "{name}");
        assert_eq!(datasource["query"], "prometheus", "{name}");

        // $slot and $table list the values of the real labels of real metrics.
        for (variable, label) in [
            ("slot", "slot"),
            ("table", "table"),
            ("instance", "instance"),
        ] {
            let v = var(variable);
            assert_eq!(v["type"], "query", "{name}: ${variable}");
            assert_eq!(v["datasource"]["uid"], DATASOURCE, "{name}: ${variable}");
            let query = v["query"].as_str().unwrap_or_default();
            let (selector, queried) = label_values(query)
                .unwrap_or_else(|| panic!("{name}: ${variable} is not label_values(..): {query}"));
            assert_eq!(queried, label, "{name}: ${variable}");
            let metric = &metric_names(selector)[0];
            assert!(
                known.contains(metric) || pending.contains(metric.as_str()),
                "{name}: ${variable} lists labels of {metric}, which src/metrics.rs does not define"
            );
        }
        // Variables refer only to variables defined before them (Grafana resolves in order).
        for (i, v) in vars.iter().enumerate() {
            let query = v["query"].as_str().unwrap_or_default();
            for later in &vars[i..] {
                let later = later["name"].as_str().unwrap();
                assert!(!query.contains(&format!("${later}")), "{name}: {query}");
            }
        }

        let mut ids = HashSet::new();
        for panel in panels(&dashboard) {
            let title = panel["title"].as_str().unwrap_or("?");
            assert!(
                ids.insert(panel["id"].as_u64()),
                "{name}: panel id of {title} repeats"
            );
            assert_eq!(
                panel["datasource"]["uid"], DATASOURCE,
                "{name}: panel {title}"
            );
            let targets = panel["targets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            assert!(!targets.is_empty(), "{name}: panel {title} has no query");
            for target in targets {
                assert_eq!(
                    target["datasource"]["uid"], DATASOURCE,
                    "{name}: panel {title}"
                );
                assert_eq!(
                    target["datasource"]["type"], "prometheus",
                    "{name}: {title}"
                );
            }
        }
    }
}

#[test]
fn dashboards_use_only_metrics_of_the_engine() {
    let known: HashSet<String> = registry_metric_names().into_iter().collect();
    assert!(known.contains("walaudit_lake_commit_duration_seconds_bucket"));
    assert!(known.contains("process_resident_memory_bytes"));
    let pending: HashSet<&str> = PENDING_METRICS.iter().map(|(name, _)| *name).collect();
    let mut used = BTreeSet::new();
    let mut unknown = Vec::new();
    for query in panel_queries() {
        let names = metric_names(&query.expr);
        assert!(!names.is_empty(), "no metric in {query:?}");
        for metric in names {
            if !known.contains(&metric)
                && !pending.contains(metric.as_str())
                && !PROMETHEUS_METRICS.contains(&metric.as_str())
            {
                unknown.push(format!(
                    "{metric} ({} / {} / {})",
                    query.dashboard, query.panel, query.ref_id
                ));
            }
            used.insert(metric);
        }
    }
    assert!(unknown.is_empty(), "not in src/metrics.rs: {unknown:#?}");
    // Every walaudit metric has a panel somewhere (the malformed-context counter included).
    let unused: Vec<&String> = known
        .iter()
        .filter(|m| m.starts_with("walaudit_") && !m.ends_with("_sum"))
        .filter(|m| !used.contains(*m))
        .filter(|m| {
            // A histogram is shown through its buckets and count.
            !m.ends_with("_bucket") || !used.contains(&m.replace("_bucket", "_count"))
        })
        .collect();
    assert!(unused.is_empty(), "metrics without a panel: {unused:?}");
    // Pending metrics are listed because a dashboard uses them, not just in case.
    for (metric, _) in PENDING_METRICS {
        assert!(
            used.contains(*metric),
            "{metric} is pending but unused: drop it"
        );
    }
}
