//! Server configuration in two phases: [`RawConfig`] holds what the file gave (every field
//! optional); flags and `FERRY_*` variables (resolved by clap, flags winning) are laid over
//! it, then defaults fill the rest into a validated [`Config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub(crate) const DEFAULT_DATA_DIR: &str = ".ferry";

/// `ferry.toml`, every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub master_key_file: Option<PathBuf>,
    pub shutdown_grace: Option<String>,
    pub kill_grace: Option<String>,
    pub public_url: Option<String>,
    /// Addresses of reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Option<Vec<String>>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Session cookies without `Secure` (plain HTTP on loopback only).
    pub insecure_cookies: Option<bool>,
    pub session_idle: Option<String>,
    pub session_absolute: Option<String>,
    /// Where runs' working directories go (default: `DATA_DIR-work`).
    pub work_dir: Option<PathBuf>,
    /// Run actions unconfined (never on a shared or production host).
    pub insecure_no_sandbox: Option<bool>,
    /// More paths no action may see (e.g. `~/.aws` when actions must not use the server's
    /// own cloud credentials).
    pub sandbox_hide: Option<Vec<PathBuf>>,
    /// Directories every action may also write (a shared cache), never inside the data dir.
    pub sandbox_writable: Option<Vec<PathBuf>>,
    /// Git transports projects may use: `https`, `ssh`, `file` (local paths) by default;
    /// `http` and `git` only when listed.
    pub git_protocols: Option<Vec<String>>,
    /// Time limit of one git operation (clone, fetch, ls-remote, checkout): default `10m`.
    pub git_timeout: Option<String>,
}

impl RawConfig {
    pub(crate) fn load(path: &Path) -> Result<RawConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// The values given on the command line or in the environment (already merged by clap).
#[derive(Debug, Default, Clone)]
pub(crate) struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub master_key: Option<String>,
    pub master_key_file: Option<PathBuf>,
    pub shutdown_grace: Option<String>,
    pub kill_grace: Option<String>,
    pub public_url: Option<String>,
    /// Comma-separated.
    pub trusted_proxies: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub insecure_cookies: Option<bool>,
    /// `FERRY_ADMIN_PASSWORD`: the first admin's password (first start only).
    pub admin_password: Option<String>,
    pub work_dir: Option<PathBuf>,
    pub insecure_no_sandbox: Option<bool>,
    /// `HOME`, for the default hidden paths (`~/.ssh`, …).
    pub home: Option<PathBuf>,
    /// The configuration file in use: hidden from actions too.
    pub config_file: Option<PathBuf>,
}

/// What actions never see besides the data dir, the work dir and the key files: the
/// server user's git and SSH credentials and the host's password and SSH host keys.
pub(crate) fn default_hidden(home: Option<&Path>) -> Vec<PathBuf> {
    let mut hidden: Vec<PathBuf> = [
        "/etc/shadow",
        "/etc/gshadow",
        "/etc/sudoers",
        "/etc/sudoers.d",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    if let Ok(entries) = std::fs::read_dir("/etc/ssh") {
        hidden.extend(entries.flatten().map(|e| e.path()).filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ssh_host_") && n.ends_with("_key"))
        }));
    }
    if let Some(home) = home {
        for name in [
            ".ssh",
            ".gnupg",
            ".git-credentials",
            ".netrc",
            ".config/git/credentials",
        ] {
            hidden.push(home.join(name));
        }
    }
    hidden
}

/// Where the master key comes from; the key itself is never part of the printed config.
#[derive(Debug, Clone)]
pub(crate) enum KeyOrigin {
    Env,
    File(PathBuf),
    DataDir,
}

/// A secret value whose `Debug` never shows it.
#[derive(Clone)]
struct Redacted(String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub key_origin: KeyOrigin,
    master_key_value: Option<Redacted>,
    pub shutdown_grace: Duration,
    pub kill_grace: Duration,
    /// Sessions, proxies, the first admin's password (its `Debug` is redacted below).
    pub access: ferry_server::AccessConfig,
    pub tls: Option<ferry_server::TlsFiles>,
    pub work_dir: PathBuf,
    pub sandbox: ferry_server::SandboxConfig,
    pub git: ferry_engine::git::GitOptions,
}

fn duration(what: &str, text: &str) -> Result<Duration> {
    humantime::parse_duration(text)
        .with_context(|| format!("{what}: `{text}` is not a duration (e.g. 30s, 2m)"))
}

impl Config {
    pub(crate) fn resolve(file: RawConfig, over: Overrides) -> Result<Config> {
        let listen_text = over
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen_text.parse().with_context(|| {
            format!("listen address `{listen_text}` is not host:port (e.g. 127.0.0.1:8080)")
        })?;
        let data_dir = over
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let data_dir = if data_dir.is_absolute() {
            data_dir
        } else {
            std::env::current_dir()?.join(data_dir)
        };
        let (key_origin, master_key_value) = match (
            over.master_key,
            over.master_key_file.or(file.master_key_file),
        ) {
            (Some(_), Some(_)) => bail!("set FERRY_MASTER_KEY or FERRY_MASTER_KEY_FILE, not both"),
            (Some(value), None) => (KeyOrigin::Env, Some(Redacted(value))),
            (None, Some(path)) => (KeyOrigin::File(path), None),
            (None, None) => (KeyOrigin::DataDir, None),
        };
        let shutdown_grace = duration(
            "shutdown grace",
            &over
                .shutdown_grace
                .or(file.shutdown_grace)
                .unwrap_or_else(|| "30s".into()),
        )?;
        let kill_grace = duration(
            "kill grace",
            &over
                .kill_grace
                .or(file.kill_grace)
                .unwrap_or_else(|| "10s".into()),
        )?;
        let mut access = ferry_server::AccessConfig::default();
        if let Some(text) = file.session_idle {
            access.session_idle = duration("session idle", &text)?;
        }
        if let Some(text) = file.session_absolute {
            access.session_absolute = duration("session absolute", &text)?;
        }
        access.cookie_secure = !over
            .insecure_cookies
            .or(file.insecure_cookies)
            .unwrap_or(false);
        access.public_url = over.public_url.or(file.public_url);
        if let Some(url) = &access.public_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                bail!("public URL `{url}` must start with https:// or http://");
            }
        }
        let proxies: Vec<String> = match over.trusted_proxies {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            None => file.trusted_proxies.unwrap_or_default(),
        };
        for proxy in proxies {
            access.trusted_proxies.push(
                proxy
                    .parse()
                    .with_context(|| format!("trusted proxy `{proxy}` is not an IP address"))?,
            );
        }
        access.admin_password = over.admin_password;
        let tls = match (
            over.tls_cert.or(file.tls_cert),
            over.tls_key.or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some(ferry_server::TlsFiles { cert, key }),
            (None, None) => None,
            _ => bail!("give both --tls-cert and --tls-key, or neither"),
        };
        let absolute = |p: PathBuf| -> Result<PathBuf> {
            Ok(if p.is_absolute() {
                p
            } else {
                std::env::current_dir()?.join(p)
            })
        };
        let work_dir = match over.work_dir.or(file.work_dir) {
            Some(dir) => absolute(dir)?,
            None => ferry_server::default_work_dir(&data_dir),
        };
        let mut hidden = default_hidden(over.home.as_deref());
        hidden.extend(over.config_file.map(absolute).transpose()?);
        for path in file.sandbox_hide.unwrap_or_default() {
            hidden.push(absolute(path)?);
        }
        let sandbox = ferry_server::SandboxConfig {
            insecure_no_sandbox: over
                .insecure_no_sandbox
                .or(file.insecure_no_sandbox)
                .unwrap_or(false),
            hidden,
            writable: file
                .sandbox_writable
                .unwrap_or_default()
                .into_iter()
                .map(absolute)
                .collect::<Result<_>>()?,
        };
        let mut git = ferry_engine::git::GitOptions::default();
        if let Some(names) = file.git_protocols {
            git.protocols = Vec::new();
            for name in names {
                let protocol = ferry_engine::git::Protocol::parse(&name).with_context(|| {
                    format!("git_protocols: `{name}` is not one of https, ssh, http, git, file")
                })?;
                if !git.protocols.contains(&protocol) {
                    git.protocols.push(protocol);
                }
            }
            if git.protocols.is_empty() {
                bail!("git_protocols is empty: list at least one of https, ssh, http, git, file");
            }
        }
        if let Some(text) = file.git_timeout {
            git.timeout = duration("git timeout", &text)?;
            if git.timeout.is_zero() {
                bail!("git timeout must be more than 0s");
            }
        }
        Ok(Config {
            listen,
            data_dir,
            key_origin,
            master_key_value,
            shutdown_grace,
            kill_grace,
            access,
            tls,
            work_dir,
            sandbox,
            git,
        })
    }

    pub(crate) fn key_source(&self) -> ferry_engine::datadir::KeySource {
        match (&self.key_origin, &self.master_key_value) {
            (KeyOrigin::Env, Some(value)) => ferry_engine::datadir::KeySource::Env(value.0.clone()),
            (KeyOrigin::File(path), _) => ferry_engine::datadir::KeySource::File(path.clone()),
            _ => ferry_engine::datadir::KeySource::DataDir(self.data_dir.clone()),
        }
    }

    /// The configuration as `ferry config check` prints it: no key material.
    pub(crate) fn redacted(&self) -> serde_json::Value {
        let key = match &self.key_origin {
            KeyOrigin::Env => "from FERRY_MASTER_KEY (redacted)".to_owned(),
            KeyOrigin::File(p) => format!("from file {}", p.display()),
            KeyOrigin::DataDir => format!(
                "from {}",
                self.data_dir
                    .join(ferry_engine::datadir::KEY_FILE)
                    .display()
            ),
        };
        serde_json::json!({
            "listen": self.listen.to_string(),
            "data_dir": self.data_dir.display().to_string(),
            "master_key": key,
            "shutdown_grace": humantime::format_duration(self.shutdown_grace).to_string(),
            "kill_grace": humantime::format_duration(self.kill_grace).to_string(),
            "public_url": self.access.public_url,
            "trusted_proxies": self.access.trusted_proxies.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "secure_cookies": self.access.cookie_secure,
            "session_idle": humantime::format_duration(self.access.session_idle).to_string(),
            "session_absolute": humantime::format_duration(self.access.session_absolute).to_string(),
            "tls": self.tls.as_ref().map(|t| serde_json::json!({
                "cert": t.cert.display().to_string(), "key": t.key.display().to_string(),
            })),
            "admin_password": self.access.admin_password.as_ref().map(|_| "from FERRY_ADMIN_PASSWORD (redacted)"),
            "work_dir": self.work_dir.display().to_string(),
            "sandbox": self.sandbox_summary(),
            "sandbox_hidden": self.sandbox.hidden.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "sandbox_writable": self.sandbox.writable.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "git_protocols": self.git.protocols.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            "git_timeout": humantime::format_duration(self.git.timeout).to_string(),
        })
    }

    /// How actions will be confined, as this host supports it.
    pub(crate) fn sandbox_summary(&self) -> String {
        if self.sandbox.insecure_no_sandbox {
            return "disabled (--insecure-no-sandbox): actions run unconfined and can read the data dir and the master key".to_owned();
        }
        let support = ferry_server::probe_sandbox();
        if support.is_available() {
            support.describe()
        } else {
            format!(
                "{} — actions will be refused (start with --insecure-no-sandbox to run them unconfined)",
                support.describe()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_env_win_over_the_file_and_defaults_fill_the_rest() {
        let file: RawConfig =
            toml::from_str("listen = \"127.0.0.1:9000\"\nkill_grace = \"3s\"\n").unwrap();
        let over = Overrides {
            listen: Some("127.0.0.1:9100".into()),
            ..Default::default()
        };
        let config = Config::resolve(file, over).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(config.kill_grace, Duration::from_secs(3));
        assert_eq!(config.shutdown_grace, Duration::from_secs(30));
        assert!(config.data_dir.ends_with(".ferry"));
    }

    #[test]
    fn bad_values_are_named() {
        let over = Overrides {
            listen: Some("localhost".into()),
            ..Default::default()
        };
        let err = Config::resolve(RawConfig::default(), over).unwrap_err();
        assert!(
            format!("{err:#}").contains("`localhost` is not host:port"),
            "{err:#}"
        );
        assert!(toml::from_str::<RawConfig>("lisen = \"x\"").is_err());
    }

    #[test]
    fn git_transports_and_timeout_resolve_and_unknown_ones_are_named() {
        let config = Config::resolve(RawConfig::default(), Overrides::default()).unwrap();
        let printed = config.redacted();
        assert_eq!(
            printed["git_protocols"],
            serde_json::json!(["https", "ssh", "file"])
        );
        assert_eq!(printed["git_timeout"], "10m");
        let file: RawConfig =
            toml::from_str("git_protocols = [\"https\", \"http\"]\ngit_timeout = \"30s\"\n")
                .unwrap();
        let config = Config::resolve(file, Overrides::default()).unwrap();
        use ferry_engine::git::Protocol;
        assert_eq!(config.git.protocols, [Protocol::Https, Protocol::Http]);
        assert_eq!(config.git.timeout, Duration::from_secs(30));
        for (text, expected) in [
            ("git_protocols = [\"ext\"]", "`ext` is not one of"),
            ("git_protocols = []", "git_protocols is empty"),
            ("git_timeout = \"0s\"", "more than 0s"),
        ] {
            let file: RawConfig = toml::from_str(text).unwrap();
            let err = Config::resolve(file, Overrides::default()).unwrap_err();
            assert!(format!("{err:#}").contains(expected), "{text}: {err:#}");
        }
    }

    #[test]
    fn the_master_key_is_never_printed() {
        let over = Overrides {
            master_key: Some("00".repeat(32)),
            ..Default::default()
        };
        let config = Config::resolve(RawConfig::default(), over).unwrap();
        let printed = config.redacted().to_string();
        assert!(!printed.contains(&"00".repeat(32)), "{printed}");
        assert!(
            !format!("{config:?}").contains(&"00".repeat(32)),
            "{config:?}"
        );
    }

    #[test]
    fn access_settings_resolve_and_the_admin_password_is_never_printed() {
        let file: RawConfig = toml::from_str(
            "trusted_proxies = [\"10.0.0.1\"]\nsession_idle = \"10m\"\ninsecure_cookies = true\n",
        )
        .unwrap();
        let over = Overrides {
            admin_password: Some("a very secret first password".into()),
            public_url: Some("https://ferry.example.com".into()),
            ..Default::default()
        };
        let config = Config::resolve(file, over).unwrap();
        assert_eq!(
            config.access.trusted_proxies,
            ["10.0.0.1".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(config.access.session_idle, Duration::from_secs(600));
        assert!(!config.access.cookie_secure);
        let printed = format!("{} {config:?}", config.redacted());
        assert!(!printed.contains("a very secret"), "{printed}");
        for (bad, message) in [
            (
                Overrides {
                    trusted_proxies: Some("proxy.local".into()),
                    ..Default::default()
                },
                "not an IP address",
            ),
            (
                Overrides {
                    public_url: Some("ferry.example.com".into()),
                    ..Default::default()
                },
                "must start with",
            ),
            (
                Overrides {
                    tls_cert: Some("c.pem".into()),
                    ..Default::default()
                },
                "--tls-key",
            ),
        ] {
            let err = Config::resolve(RawConfig::default(), bad).unwrap_err();
            assert!(format!("{err:#}").contains(message), "{err:#}");
        }
    }
}
