//! `docker/` holds together without a Docker engine: the compose services exist and reference
//! files that exist, the engine's config loads with walaudit's own loader and points at the
//! compose services, Prometheus and Grafana load the repository's rules and dashboards, and the
//! Dockerfile's stages are consistent.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use walaudit::config::Config;
use yaml_rust2::{Yaml, YamlLoader};

use super::repo;

const SERVICES: &[&str] = &[
    "postgres",
    "minio",
    "minio-init",
    "walaudit",
    "prometheus",
    "grafana",
];

fn docker_dir() -> PathBuf {
    repo().join("docker")
}

fn load_yaml(path: &Path) -> Yaml {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut docs = YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    assert_eq!(docs.len(), 1, "{}: one document", path.display());
    docs.remove(0)
}

fn compose() -> Yaml {
    load_yaml(&docker_dir().join("compose.yml"))
}

fn str_list(yaml: &Yaml) -> Vec<String> {
    match yaml {
        Yaml::Array(items) => items
            .iter()
            .map(|i| match i {
                Yaml::String(s) => s.clone(),
                Yaml::Integer(n) => n.to_string(),
                other => panic!("not a string: {other:?}"),
            })
            .collect(),
        Yaml::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        Yaml::BadValue | Yaml::Null => Vec::new(),
        other => panic!("not a list: {other:?}"),
    }
}

/// A service's environment (map form).
fn env<'a>(service: &'a Yaml, key: &str) -> &'a str {
    service["environment"][key]
        .as_str()
        .unwrap_or_else(|| panic!("environment {key} missing in {service:?}"))
}

/// A bind mount: host path (resolved against docker/) and container path.
#[derive(Debug)]
struct Bind {
    host: PathBuf,
    target: String,
}

/// The bind mounts of a service (short and long syntax); named volumes are checked against
/// the top-level `volumes`.
fn binds(compose: &Yaml, name: &str) -> Vec<Bind> {
    let declared: HashSet<String> = compose["volumes"]
        .as_hash()
        .map(|h| {
            h.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for volume in compose["services"][name]["volumes"]
        .as_vec()
        .into_iter()
        .flatten()
    {
        let (source, target) = match volume {
            Yaml::String(short) => {
                let mut parts = short.splitn(3, ':');
                let source = parts.next().unwrap().to_owned();
                let target = parts.next().unwrap_or_else(|| panic!("{name}: {short}"));
                (source, target.to_owned())
            }
            long => (
                long["source"].as_str().unwrap().to_owned(),
                long["target"].as_str().unwrap().to_owned(),
            ),
        };
        if source.starts_with('.') || source.starts_with('/') {
            out.push(Bind {
                host: docker_dir().join(&source),
                target,
            });
        } else {
            assert!(
                declared.contains(&source),
                "{name}: volume {source} not declared"
            );
        }
    }
    out
}

fn bind_to<'a>(binds: &'a [Bind], target: &str) -> &'a Bind {
    binds
        .iter()
        .find(|b| b.target == target)
        .unwrap_or_else(|| panic!("nothing is mounted at {target}: {binds:?}"))
}

/// `*` within the last path segment, the way Prometheus' rule_files globs are used here.
fn glob_matches(pattern: &str, path: &str) -> bool {
    match pattern.split_once('*') {
        Some((prefix, suffix)) => {
            path.starts_with(prefix)
                && path.ends_with(suffix)
                && !path[prefix.len()..path.len() - suffix.len()].contains('/')
        }
        None => pattern == path,
    }
}

#[test]
fn compose_services_exist_and_every_referenced_file_exists() {
    let compose = compose();
    let services = compose["services"].as_hash().expect("services");
    let names: HashSet<&str> = services.keys().filter_map(Yaml::as_str).collect();
    for required in SERVICES {
        assert!(names.contains(required), "service {required} missing");
    }
    for name in &names {
        let service = &compose["services"][*name];
        assert!(
            service["image"].as_str().is_some() || !service["build"].is_badvalue(),
            "{name}: neither image nor build"
        );
        for bind in binds(&compose, name) {
            assert!(
                bind.host.exists(),
                "{name}: {} (mounted at {}) does not exist",
                bind.host.display(),
                bind.target
            );
        }
        let depends: Vec<String> = match &service["depends_on"] {
            Yaml::Hash(h) => h
                .keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect(),
            other => str_list(other),
        };
        for dep in depends {
            assert!(
                names.contains(dep.as_str()),
                "{name} depends on unknown {dep}"
            );
        }
    }
    let build = &compose["services"]["walaudit"]["build"];
    let context = docker_dir().join(build["context"].as_str().expect("build.context"));
    assert!(context.is_dir(), "build context {}", context.display());
    let dockerfile = context.join(build["dockerfile"].as_str().unwrap_or("Dockerfile"));
    assert!(dockerfile.is_file(), "dockerfile {}", dockerfile.display());
    assert_eq!(
        dockerfile.canonicalize().unwrap(),
        docker_dir().join("Dockerfile").canonicalize().unwrap()
    );

    let postgres = &compose["services"]["postgres"];
    assert!(
        postgres["image"]
            .as_str()
            .unwrap()
            .starts_with("postgres:15")
    );
    assert!(str_list(&postgres["command"]).contains(&"wal_level=logical".to_owned()));
    for name in ["postgres", "minio"] {
        assert!(
            !compose["services"][name]["healthcheck"]["test"].is_badvalue(),
            "{name}: healthcheck"
        );
    }
    assert_eq!(
        compose["services"]["walaudit"]["depends_on"]["postgres"]["condition"].as_str(),
        Some("service_healthy")
    );
}

#[test]
fn compose_engine_config_loads_and_points_at_the_compose_services() {
    let compose = compose();
    let walaudit = &compose["services"]["walaudit"];
    let command = str_list(&walaudit["command"]);
    let at = command
        .iter()
        .position(|a| a == "--config")
        .expect("--config");
    let config_path = &command[at + 1];
    assert_eq!(
        command.last().map(String::as_str),
        Some("run"),
        "{command:?}"
    );
    let binds = binds(&compose, "walaudit");
    let host = &bind_to(&binds, config_path).host;
    // walaudit's own loader: unknown keys and invalid values fail here as they would at start.
    let config = Config::from_file(host).unwrap_or_else(|e| panic!("{}: {e}", host.display()));
    config.validate().unwrap();

    let postgres = &compose["services"]["postgres"];
    let source = url::Url::parse(config.source_url().unwrap()).unwrap();
    assert_eq!(source.host_str(), Some("postgres"));
    assert_eq!(source.port(), Some(5432));
    assert_eq!(source.username(), env(postgres, "POSTGRES_USER"));
    assert_eq!(source.password(), Some(env(postgres, "POSTGRES_PASSWORD")));
    assert_eq!(source.path(), format!("/{}", env(postgres, "POSTGRES_DB")));

    let lake = url::Url::parse(&config.lake.url).unwrap();
    assert_eq!(lake.scheme(), "s3");
    let bucket = lake.host_str().unwrap();
    let s3 = &config.lake.s3;
    let endpoint = url::Url::parse(s3.endpoint.as_deref().expect("lake.s3.endpoint")).unwrap();
    assert_eq!(endpoint.host_str(), Some("minio"));
    assert_eq!(endpoint.port(), Some(9000));
    assert_eq!(s3.allow_http, Some(endpoint.scheme() == "http"));
    let minio = &compose["services"]["minio"];
    assert_eq!(
        s3.access_key_id.as_deref(),
        Some(env(minio, "MINIO_ROOT_USER"))
    );
    assert_eq!(
        s3.secret_access_key.as_deref(),
        Some(env(minio, "MINIO_ROOT_PASSWORD"))
    );
    let init = str_list(&compose["services"]["minio-init"]["command"]).join(" ");
    assert!(
        init.contains(&format!("mb --ignore-existing local/{bucket}")),
        "{init}"
    );
    assert!(init.contains(env(minio, "MINIO_ROOT_PASSWORD")), "{init}");

    let listen = env(walaudit, "WALAUDIT_LISTEN");
    assert!(
        listen.starts_with("0.0.0.0:"),
        "reachable from other containers: {listen}"
    );
}

#[test]
fn compose_prometheus_and_grafana_load_the_repository_rules_and_dashboards() {
    let compose = compose();
    let walaudit_port = env(&compose["services"]["walaudit"], "WALAUDIT_LISTEN")
        .rsplit_once(':')
        .unwrap()
        .1
        .to_owned();

    // Prometheus: scrapes walaudit as job `walaudit` (the alert rules' job) and loads the rules.
    let binds_p = binds(&compose, "prometheus");
    let config_target = str_list(&compose["services"]["prometheus"]["command"])
        .iter()
        .find_map(|a| a.strip_prefix("--config.file=").map(str::to_owned))
        .expect("--config.file");
    let prometheus = load_yaml(&bind_to(&binds_p, &config_target).host);
    let jobs = prometheus["scrape_configs"].as_vec().unwrap();
    let job = jobs
        .iter()
        .find(|j| j["job_name"].as_str() == Some("walaudit"))
        .expect("scrape job walaudit");
    let targets = str_list(&job["static_configs"][0]["targets"]);
    assert_eq!(targets, [format!("walaudit:{walaudit_port}")]);
    let rules = repo().join(super::alerts::RULES).canonicalize().unwrap();
    let rules_bind = binds_p
        .iter()
        .find(|b| b.host.canonicalize().ok().as_ref() == Some(&rules))
        .expect("the alert rules are mounted");
    let patterns = str_list(&prometheus["rule_files"]);
    assert!(
        patterns.iter().any(|p| glob_matches(p, &rules_bind.target)),
        "rule_files {patterns:?} miss {}",
        rules_bind.target
    );

    // Grafana: the dashboards folder is mounted where the provider reads, and the datasource
    // is the prometheus service.
    let binds_g = binds(&compose, "grafana");
    let dashboards_dir = repo().join("dashboards").canonicalize().unwrap();
    let dashboards_bind = binds_g
        .iter()
        .find(|b| b.host.canonicalize().ok().as_ref() == Some(&dashboards_dir))
        .expect("dashboards/ is mounted into grafana");
    let provisioning = &bind_to(&binds_g, "/etc/grafana/provisioning").host;
    let providers = load_yaml(&provisioning.join("dashboards/walaudit.yml"));
    assert_eq!(
        providers["providers"][0]["options"]["path"].as_str(),
        Some(dashboards_bind.target.as_str())
    );
    assert_eq!(providers["providers"][0]["type"].as_str(), Some("file"));
    let datasources = load_yaml(&provisioning.join("datasources/prometheus.yml"));
    let ds = &datasources["datasources"][0];
    assert_eq!(ds["type"].as_str(), Some("prometheus"));
    let ds_url = url::Url::parse(ds["url"].as_str().unwrap()).unwrap();
    assert_eq!(ds_url.host_str(), Some("prometheus"));
    assert_eq!(ds_url.port(), Some(9090));
    // Grafana loads every .json below the folder: only dashboards may live there.
    for entry in walk(&dashboards_dir) {
        if entry.extension().is_some_and(|e| e == "json") {
            let json: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&entry).unwrap()).unwrap();
            assert!(
                json["panels"].is_array() && json["uid"].is_string(),
                "{} is not a dashboard",
                entry.display()
            );
        }
    }
    let home = env(
        &compose["services"]["grafana"],
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH",
    );
    let file = home
        .strip_prefix(&format!("{}/", dashboards_bind.target))
        .expect("home dashboard in the mounted folder");
    assert!(dashboards_dir.join(file).is_file(), "{home}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// One Dockerfile instruction: keyword (upper case) and arguments, continuations joined.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((keyword.to_ascii_uppercase(), args.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

#[derive(Debug, Default)]
struct Stage {
    image: String,
    name: String,
    instructions: Vec<(String, String)>,
}

#[test]
fn dockerfile_stages_build_with_the_lock_file_and_run_unprivileged() {
    let text = std::fs::read_to_string(docker_dir().join("Dockerfile")).unwrap();
    let mut stages: Vec<Stage> = Vec::new();
    for (keyword, args) in instructions(&text) {
        if keyword == "FROM" {
            let parts: Vec<&str> = args.split_whitespace().collect();
            let name = match parts.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => name.to_string(),
                [_] => String::new(),
                other => panic!("FROM {other:?}"),
            };
            stages.push(Stage {
                image: parts[0].to_owned(),
                name,
                instructions: Vec::new(),
            });
        } else {
            stages
                .last_mut()
                .expect("an instruction before FROM")
                .instructions
                .push((keyword, args));
        }
    }
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names.iter().collect::<HashSet<_>>().len(),
        names.len(),
        "stage names repeat: {names:?}"
    );

    // The builder: a Rust toolchain at least the crate's rust-version, building from the lock.
    let builder = &stages[0];
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(repo().join("Cargo.toml")).unwrap()).unwrap();
    let msrv = manifest["package"]["rust-version"].as_str().unwrap();
    let tag = builder
        .image
        .strip_prefix("rust:")
        .expect("a rust: builder image");
    let version = tag.split('-').next().unwrap();
    let parse = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap()).collect() };
    assert!(
        parse(version) >= parse(msrv),
        "rust:{version} < rust-version {msrv}"
    );
    let runs = |stage: &Stage| -> String {
        stage
            .instructions
            .iter()
            .filter(|(k, _)| k == "RUN")
            .map(|(_, a)| a.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        runs(builder).contains("cargo build --release --locked"),
        "{builder:?}"
    );

    // COPY sources exist in the build context (the repository root) and are not ignored.
    let ignored: Vec<String> = std::fs::read_to_string(repo().join(".dockerignore"))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    for (i, stage) in stages.iter().enumerate() {
        for (keyword, args) in &stage.instructions {
            if keyword != "COPY" {
                continue;
            }
            let parts: Vec<&str> = args.split_whitespace().collect();
            if let Some(from) = parts[0].strip_prefix("--from=") {
                let earlier = stages[..i].iter().position(|s| s.name == from);
                let earlier =
                    earlier.unwrap_or_else(|| panic!("COPY --from={from}: no earlier stage"));
                // What is copied is produced there.
                assert!(
                    runs(&stages[earlier]).contains(parts[1]),
                    "COPY --from={from} {}: not made in stage {from}",
                    parts[1]
                );
            } else {
                for source in &parts[..parts.len() - 1] {
                    assert!(repo().join(source).exists(), "COPY {source}: missing");
                    let top = source.trim_end_matches('/').split('/').next().unwrap();
                    assert!(!ignored.iter().any(|i| i == top), "COPY {source}: ignored");
                }
            }
        }
    }
    // Cargo.toml's [[bench]] targets must be in the context for cargo to read the manifest.
    let copied: String = builder
        .instructions
        .iter()
        .filter(|(k, _)| k == "COPY")
        .map(|(_, a)| a.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    for needed in ["Cargo.toml", "Cargo.lock", "src", "benches"] {
        assert!(
            copied.contains(needed),
            "the builder does not copy {needed}"
        );
    }

    // The runtime: slim Debian of the builder's release, CA roots, non-root, port, entrypoint.
    let runtime = stages.last().unwrap();
    assert_eq!(runtime.image, "debian:bookworm-slim");
    assert!(
        tag.ends_with("-bookworm"),
        "same glibc as the runtime: {tag}"
    );
    assert!(runs(runtime).contains("ca-certificates"));
    let last = |keyword: &str| {
        runtime
            .instructions
            .iter()
            .rev()
            .find(|(k, _)| k == keyword)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| panic!("no {keyword} in the runtime stage"))
    };
    let user = last("USER");
    assert!(!["root", "0"].contains(&user.as_str()), "USER {user}");
    let made = runs(runtime);
    assert!(
        made.contains("useradd") && made.contains(&format!(" {user}")),
        "USER {user} is not created in the runtime stage"
    );
    assert_eq!(last("EXPOSE"), "9187");
    let entrypoint: Vec<String> = serde_json::from_str(&last("ENTRYPOINT")).unwrap();
    assert_eq!(entrypoint, ["walaudit"]);
}
