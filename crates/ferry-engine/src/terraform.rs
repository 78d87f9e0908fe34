//! What Ferry knows about the `terraform`/`tofu` binary: finding it, checking its version,
//! pointing it at Ferry's state location, and summarising a plan's JSON.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use ferry_spec::TerraformSpec;
use serde_json::Value;

/// A binary that was found and whose version satisfies the pipeline's constraint.
#[derive(Debug, Clone)]
pub struct Binary {
    pub path: PathBuf,
    pub version: semver::Version,
}

#[derive(Debug, thiserror::Error)]
pub enum BinaryError {
    #[error("terraform binary `{0}` not found on PATH (install it, or set `terraform.binary` in ferry.yaml)")]
    NotFound(String),
    #[error("could not read the version of `{binary}`: {message}")]
    Version { binary: String, message: String },
    #[error("`{binary}` is version {version}, but the pipeline requires `{constraint}`")]
    Unsupported {
        binary: String,
        version: semver::Version,
        constraint: String,
    },
}

/// Looks `name` up on `path_var` (a PATH value); names with a `/` are taken as paths.
pub fn find_binary(name: &str, path_var: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_exec(&p).then_some(p);
    }
    std::env::split_paths(path_var)
        .map(|dir| dir.join(name))
        .find(|p| is_exec(p))
}

/// Versions of binaries already asked, so that a trigger does not pay for a `terraform
/// version` process (tens of milliseconds) every time. An entry is keyed by the file's
/// identity (device, inode, size, modification time), so a replaced or upgraded binary is
/// asked again, and it expires after [`VersionCache::TTL`] for wrappers (tfenv, asdf shims)
/// whose answer can change while the file does not.
#[derive(Debug, Default)]
pub struct VersionCache {
    entries: std::sync::Mutex<std::collections::HashMap<PathBuf, CacheEntry>>,
}

#[derive(Debug, Clone)]
struct CacheEntry {
    file: FileId,
    version: semver::Version,
    at: std::time::Instant,
}

type FileId = (u64, u64, u64, i64, i64);

fn file_id(path: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

impl VersionCache {
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(300);

    fn get(&self, path: &Path) -> Option<semver::Version> {
        let file = file_id(path)?;
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get(path)?;
        (entry.file == file && entry.at.elapsed() < Self::TTL).then(|| entry.version.clone())
    }

    fn put(&self, path: &Path, version: &semver::Version) {
        if let Some(file) = file_id(path) {
            let entry = CacheEntry {
                file,
                version: version.clone(),
                at: std::time::Instant::now(),
            };
            self.entries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(path.to_owned(), entry);
        }
    }
}

/// Finds the pipeline's binary and checks its version, before a run starts.
pub async fn check_binary(
    spec: &TerraformSpec,
    path_var: &str,
    cache: &VersionCache,
) -> Result<Binary, BinaryError> {
    let path = find_binary(&spec.binary, path_var)
        .ok_or_else(|| BinaryError::NotFound(spec.binary.clone()))?;
    let version = match cache.get(&path) {
        Some(version) => version,
        None => {
            let version = ask_version(&spec.binary, &path).await?;
            cache.put(&path, &version);
            version
        }
    };
    if let Some(constraint) = &spec.version {
        if !constraint.matches(&version) {
            return Err(BinaryError::Unsupported {
                binary: spec.binary.clone(),
                version,
                constraint: constraint.text.clone(),
            });
        }
    }
    Ok(Binary { path, version })
}

/// Runs `BINARY version -json`; Terraform and OpenTofu both answer `terraform_version`.
async fn ask_version(binary: &str, path: &Path) -> Result<semver::Version, BinaryError> {
    let version_err = |message: String| BinaryError::Version {
        binary: binary.to_owned(),
        message,
    };
    let out = tokio::process::Command::new(path)
        .args(["version", "-json"])
        .env("CHECKPOINT_DISABLE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| version_err(e.to_string()))?;
    if !out.status.success() {
        return Err(version_err(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    let json: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| version_err(format!("unexpected output: {e}")))?;
    let text = json["terraform_version"]
        .as_str()
        .ok_or_else(|| version_err("no terraform_version in output".into()))?;
    semver::Version::parse(text).map_err(|e| version_err(format!("`{text}`: {e}")))
}

/// The override file that points the configuration at Ferry's built-in state backend.
/// Terraform merges `*_override.tf` files last, so this replaces whatever backend the
/// configuration declares. It holds no address and no credential: those reach Terraform as
/// `TF_HTTP_*` environment variables only, because `-backend-config` values are copied into
/// saved plan files.
pub const OVERRIDE_FILE: &str = "ferry_backend_override.tf";

pub const BACKEND_OVERRIDE: &str =
    "# Written by Ferry for this run; not part of your repository.\nterraform {\n  backend \"http\" {}\n}\n";

/// Whether the configuration in `dir` declares a backend of its own (which Ferry's override
/// replaces; the run log says so).
pub fn declares_backend(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        // Regular files only: Ferry reads no link a commit could point at its own files.
        let is_tf = path.extension().is_some_and(|x| x == "tf")
            && e.file_name() != OVERRIDE_FILE
            && e.file_type().is_ok_and(|t| t.is_file());
        is_tf
            && std::fs::read_to_string(&path).is_ok_and(|text| {
                text.lines().any(|l| {
                    let l = l.trim_start();
                    (l.starts_with("backend \"") || l.starts_with("backend \t\""))
                        && !l.starts_with('#')
                })
            })
    })
}

/// Adds, changes and destroys by resource, as Terraform counts them (a replacement is one
/// add and one destroy).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PlanSummary {
    pub add: u32,
    pub change: u32,
    pub destroy: u32,
    pub resources: Vec<ResourceChange>,
    pub outputs_changed: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResourceChange {
    pub address: String,
    /// `create`, `update`, `delete`, `replace` or `read`.
    pub action: String,
}

impl PlanSummary {
    pub fn has_changes(&self) -> bool {
        self.add + self.change + self.destroy > 0 || self.outputs_changed
    }

    pub fn from_plan_json(plan: &Value) -> PlanSummary {
        let mut summary = PlanSummary::default();
        for rc in plan["resource_changes"].as_array().into_iter().flatten() {
            let actions: Vec<&str> = rc["change"]["actions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let action = match actions.as_slice() {
                ["create"] => {
                    summary.add += 1;
                    "create"
                }
                ["update"] => {
                    summary.change += 1;
                    "update"
                }
                ["delete"] => {
                    summary.destroy += 1;
                    "delete"
                }
                ["delete", "create"] | ["create", "delete"] => {
                    summary.add += 1;
                    summary.destroy += 1;
                    "replace"
                }
                ["read"] => "read",
                _ => continue,
            };
            let address = rc["address"].as_str().unwrap_or("").to_owned();
            summary.resources.push(ResourceChange {
                address,
                action: action.to_owned(),
            });
        }
        // Destroys first: they are what a reviewer must not miss.
        summary.resources.sort_by_key(|r| match r.action.as_str() {
            "delete" => 0,
            "replace" => 1,
            _ => 2,
        });
        summary.outputs_changed = plan["output_changes"]
            .as_object()
            .map(|outputs| {
                outputs.values().any(|o| {
                    o["actions"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x != "no-op"))
                })
            })
            .unwrap_or(false);
        summary
    }

    /// `+2 ~1 -0`, as a one-line summary for logs and the CLI.
    pub fn short(&self) -> String {
        format!("+{} ~{} -{}", self.add, self.change, self.destroy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_resource_changes_like_terraform() {
        let plan = serde_json::json!({
            "resource_changes": [
                {"address": "a.x", "change": {"actions": ["create"]}},
                {"address": "a.y", "change": {"actions": ["update"]}},
                {"address": "a.z", "change": {"actions": ["delete", "create"]}},
                {"address": "a.w", "change": {"actions": ["no-op"]}},
                {"address": "a.v", "change": {"actions": ["delete"]}},
            ],
            "output_changes": {"o": {"actions": ["no-op"]}}
        });
        let s = PlanSummary::from_plan_json(&plan);
        assert_eq!((s.add, s.change, s.destroy), (2, 1, 2));
        assert_eq!(s.short(), "+2 ~1 -2");
        assert_eq!(s.resources.len(), 4);
        let order: Vec<&str> = s.resources.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(
            order,
            ["delete", "replace", "create", "update"],
            "destroys first"
        );
        assert!(s.has_changes());
        assert!(!s.outputs_changed);
    }

    #[test]
    fn output_only_changes_count_as_changes() {
        let plan = serde_json::json!({"resource_changes": [], "output_changes": {"o": {"actions": ["create"]}}});
        assert!(PlanSummary::from_plan_json(&plan).has_changes());
        let plan = serde_json::json!({"resource_changes": [{"address": "a", "change": {"actions": ["no-op"]}}]});
        assert!(!PlanSummary::from_plan_json(&plan).has_changes());
    }

    #[test]
    fn the_override_names_the_http_backend_and_no_credentials() {
        assert!(BACKEND_OVERRIDE.contains("backend \"http\" {}"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("main.tf"),
            "resource \"terraform_data\" \"a\" {}\n",
        )
        .unwrap();
        assert!(!declares_backend(dir.path()));
        std::fs::write(dir.path().join(OVERRIDE_FILE), BACKEND_OVERRIDE).unwrap();
        assert!(
            !declares_backend(dir.path()),
            "Ferry's own override does not count"
        );
        std::fs::write(
            dir.path().join("backend.tf"),
            "terraform {\n  backend \"s3\" {\n    bucket = \"b\"\n  }\n}\n",
        )
        .unwrap();
        assert!(declares_backend(dir.path()));
    }

    #[test]
    fn finds_binaries_on_path() {
        assert!(find_binary("sh", "/nonexistent:/bin:/usr/bin").is_some());
        assert!(find_binary("no-such-binary-ferry", "/bin:/usr/bin").is_none());
        assert!(find_binary("/bin/sh", "").is_some());
    }

    fn fake_binary(dir: &Path, version: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("tf");
        let script = format!(
            "#!/bin/sh\necho asked >> '{}/asked'\necho '{{\"terraform_version\":\"{version}\"}}'\n",
            dir.display()
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn asked(dir: &Path) -> usize {
        std::fs::read_to_string(dir.join("asked"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn versions_are_asked_once_per_binary_file_and_checked_against_the_constraint() {
        let dir = tempfile::tempdir().unwrap();
        let path = fake_binary(dir.path(), "1.6.2");
        let spec = |constraint: Option<&str>| TerraformSpec {
            dir: ".".into(),
            binary: path.to_string_lossy().into_owned(),
            version: constraint.map(|c| ferry_spec::VersionConstraint::parse(c).unwrap()),
        };
        let cache = VersionCache::default();
        let found = check_binary(&spec(Some(">= 1.6")), "", &cache)
            .await
            .unwrap();
        assert_eq!(found.version.to_string(), "1.6.2");
        check_binary(&spec(None), "", &cache).await.unwrap();
        assert_eq!(asked(dir.path()), 1, "the second check uses the cache");
        let err = check_binary(&spec(Some("~> 1.7")), "", &cache)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "`{}` is version 1.6.2, but the pipeline requires `~> 1.7`",
                path.display()
            )
        );
        // A replaced binary is a different file: asked again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fake_binary(dir.path(), "1.7.0");
        let found = check_binary(&spec(Some("~> 1.7")), "", &cache)
            .await
            .unwrap();
        assert_eq!(found.version.to_string(), "1.7.0");
        assert_eq!(asked(dir.path()), 2);
        let missing = TerraformSpec {
            dir: ".".into(),
            binary: "no-such-terraform".into(),
            version: None,
        };
        let err = check_binary(&missing, "/nonexistent", &cache)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("`no-such-terraform` not found on PATH"),
            "{err}"
        );
    }
}
