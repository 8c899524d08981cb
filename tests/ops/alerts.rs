//! The alert rules pass `promtool check rules`, their unit tests pass `promtool test rules`,
//! and they use only metric names the engine defines.

use std::collections::HashSet;
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

use super::{PENDING_METRICS, PROMETHEUS_METRICS, metric_names, registry_metric_names, repo};

pub const RULES: &str = "dashboards/walaudit-alerts.yml";
const RULE_TESTS: &str = "dashboards/walaudit-alerts.test.yml";

/// The alerts every deployment needs (issue 5).
const REQUIRED_ALERTS: &[&str] = &[
    "WalauditDown",
    "WalauditNotStreaming",
    "WalauditReplicationLagHigh",
    "WalauditEndToEndLagHigh",
    "WalauditRetainedWalHigh",
    "WalauditPermanentErrors",
    "WalauditErrorsIncreasing",
    "WalauditChecksOverdue",
];

fn promtool(args: &[&str]) -> String {
    crate::support::prerequisites::require("promtool");
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo())
        .output()
        .expect("promtool runs (apt-get install prometheus)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {}: {text}", args.join(" "));
    text
}

/// (alert name, expression) of every rule in the rule file.
pub fn alert_rules() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join(RULES)).unwrap();
    let docs = YamlLoader::load_from_str(&text).unwrap();
    let mut rules = Vec::new();
    for group in docs[0]["groups"].as_vec().unwrap() {
        for rule in group["rules"].as_vec().unwrap() {
            let name = rule["alert"].as_str().expect("alerting rules only");
            let expr = match &rule["expr"] {
                Yaml::String(expr) => expr.clone(),
                other => panic!("{name}: expr {other:?}"),
            };
            rules.push((name.to_owned(), expr));
        }
    }
    rules
}

#[test]
fn alert_rules_pass_promtool_check() {
    let out = promtool(&["check", "rules", RULES]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn alert_rules_pass_their_unit_tests() {
    let out = promtool(&["test", "rules", RULE_TESTS]);
    assert!(out.contains("SUCCESS"), "{out}");
    // Every alert has at least one firing case and one silent case in the unit tests.
    let tests = std::fs::read_to_string(repo().join(RULE_TESTS)).unwrap();
    let docs = YamlLoader::load_from_str(&tests).unwrap();
    let (mut firing, mut silent) = (HashSet::new(), HashSet::new());
    for test in docs[0]["tests"].as_vec().unwrap() {
        for case in test["alert_rule_test"].as_vec().into_iter().flatten() {
            let name = case["alertname"].as_str().unwrap().to_owned();
            match case["exp_alerts"].as_vec() {
                Some(alerts) if !alerts.is_empty() => firing.insert(name),
                _ => silent.insert(name),
            };
        }
    }
    for (alert, _) in alert_rules() {
        assert!(firing.contains(&alert), "{alert}: no firing case");
        assert!(silent.contains(&alert), "{alert}: no silent case");
    }
}

#[test]
fn alert_rules_cover_the_required_alerts_with_engine_metrics() {
    let rules = alert_rules();
    for required in REQUIRED_ALERTS {
        assert!(
            rules.iter().any(|(name, _)| name == required),
            "missing alert {required}"
        );
    }
    let known: HashSet<String> = registry_metric_names().into_iter().collect();
    for (name, expr) in &rules {
        let metrics = metric_names(expr);
        assert!(!metrics.is_empty(), "{name}: {expr}");
        for metric in metrics {
            assert!(
                known.contains(&metric)
                    || PROMETHEUS_METRICS.contains(&metric.as_str())
                    || PENDING_METRICS.iter().any(|(m, _)| *m == metric),
                "{name}: {metric} is not in src/metrics.rs"
            );
        }
    }
}
