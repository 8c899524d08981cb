//! Certificates for a test cluster with `ssl = on`: a throwaway CA and a server certificate it
//! signs for `127.0.0.1` and `localhost`, made with the `openssl` command-line tool.
//!
//! A separate CA (rather than one self-signed server certificate) because rustls/webpki
//! rejects a CA certificate used as the end-entity certificate.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cluster::{ServerUser, chown, write_file};

/// Where the generated files are; `ca_cert` is what clients trust.
#[derive(Clone, Debug)]
pub(crate) struct TlsFiles {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

const SERVER_EXTENSIONS: &str = "basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
";

/// Generates the CA and server certificate into `dir` (created), readable by the server user.
pub(crate) fn generate(dir: &Path, owner: Option<&ServerUser>) -> Result<TlsFiles> {
    // Without `openssl`, this ends the test process with the command that installs it.
    super::prerequisites::require("openssl");
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    chown(dir, owner)?;
    let files = TlsFiles {
        ca_cert: dir.join("ca.crt"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
    };
    let ca_key = dir.join("ca.key");
    let csr = dir.join("server.csr");
    let ext = dir.join("server.ext");
    write_file(&ext, SERVER_EXTENSIONS, 0o644, owner)?;

    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-days", "3", "-subj", "/CN=walaudit test CA"],
        ]
        .concat(),
        &[
            ("-addext", "basicConstraints=critical,CA:TRUE"),
            ("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
            ("-keyout", path_str(&ca_key)?),
            ("-out", path_str(&files.ca_cert)?),
        ],
    )?;
    openssl(
        &[&["req"][..], &ec, &["-subj", "/CN=localhost"]].concat(),
        &[
            ("-keyout", path_str(&files.server_key)?),
            ("-out", path_str(&csr)?),
        ],
    )?;
    openssl(
        &["x509", "-req", "-days", "3", "-set_serial", "1"],
        &[
            ("-in", path_str(&csr)?),
            ("-CA", path_str(&files.ca_cert)?),
            ("-CAkey", path_str(&ca_key)?),
            ("-extfile", path_str(&ext)?),
            ("-out", path_str(&files.server_cert)?),
        ],
    )?;

    // Postgres refuses a key readable by others; it must belong to the server user.
    for (path, mode) in [(&files.server_key, 0o600), (&files.server_cert, 0o644)] {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .with_context(|| format!("chmod {}", path.display()))?;
        chown(path, owner)?;
    }
    Ok(files)
}

fn openssl(args: &[&str], pairs: &[(&str, &str)]) -> Result<()> {
    let mut cmd = Command::new("openssl");
    cmd.args(args);
    for (flag, value) in pairs {
        cmd.arg(flag).arg(value);
    }
    let out = cmd.output().context("run openssl")?;
    if !out.status.success() {
        bail!(
            "`openssl {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("non-UTF-8 path {}", path.display()))
}

/// A throwaway CA and a server certificate for `127.0.0.1`/`localhost` (for the HTTP API's
/// TLS tests): `(ca_cert, server_cert, server_key)`.
pub fn api_certificates(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let files = generate(dir, None)?;
    Ok((files.ca_cert, files.server_cert, files.server_key))
}
