//! Engine configuration: TOML file, environment and flag overrides.
