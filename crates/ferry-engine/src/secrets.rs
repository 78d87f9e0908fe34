//! Secrets in runs: resolving a run's secrets and parameters (narrowest scope first; none
//! of environment scope for a branch the pipeline does not deploy), handing them to each
//! action as variables or 0600 files (per stage), recording which versions were used, and
//! the adapter that puts `ferry-secrets`' streaming masker into the executor's output path.
//! Also the secret administration calls that need the engine's master key.
//!
//! `ferry-secrets` knows nothing of the executor and the executor knows
//! nothing of secrets (ARCHITECTURE.md); the engine, which depends on both,
//! joins them here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_core::Actor;
use ferry_executor::OutputFilter;
use ferry_secrets::{MaskStream, Masker, Plaintext};
use ferry_spec::{PipelineSpec, SecretRef, SecretTarget};
use ferry_store::{Resolved, Scope, SecretKind, SecretMeta, SecretName};
use zeroize::Zeroize as _;

use crate::{Engine, Result};

/// An [`OutputFilter`] that masks one output stream with a run's [`Masker`].
#[derive(Debug)]
pub struct MaskFilter(MaskStream);

impl MaskFilter {
    pub fn new(masker: Arc<Masker>) -> MaskFilter {
        MaskFilter(MaskStream::new(masker))
    }

    /// The stdout and stderr filters of one action.
    pub fn pair(masker: &Arc<Masker>) -> (Box<dyn OutputFilter>, Box<dyn OutputFilter>) {
        (
            Box::new(MaskFilter::new(masker.clone())),
            Box::new(MaskFilter::new(masker.clone())),
        )
    }
}

impl OutputFilter for MaskFilter {
    fn filter(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.0.filter(input, out);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.0.finish(out);
    }
}

/// Secret and parameter administration, which needs the master key the engine holds.
impl Engine {
    /// Sets a new version of a secret or parameter (sealed under the master key).
    pub async fn set_secret(
        &self,
        actor: &Actor,
        kind: SecretKind,
        scope: &Scope,
        name: &SecretName,
        value: &[u8],
    ) -> Result<SecretMeta> {
        Ok(self
            .store()
            .set_secret(actor, self.master_key(), kind, scope, name, value)
            .await?)
    }

    /// A parameter's current value at exactly `scope`.
    pub async fn param_value(
        &self,
        scope: &Scope,
        name: &SecretName,
    ) -> Result<(SecretMeta, Plaintext)> {
        Ok(self
            .store()
            .param_value(self.master_key(), scope, name)
            .await?)
    }

    /// Removes a secret or parameter (every version).
    pub async fn remove_secret(
        &self,
        actor: &Actor,
        kind: SecretKind,
        scope: &Scope,
        name: &SecretName,
    ) -> Result<SecretMeta> {
        Ok(self.store().remove_secret(actor, kind, scope, name).await?)
    }

    /// Metadata of every secret or parameter (of `project` and the global ones).
    pub async fn list_secrets(
        &self,
        kind: SecretKind,
        project: Option<&str>,
    ) -> Result<Vec<SecretMeta>> {
        Ok(self.store().list_secrets(kind, project).await?)
    }
}

/// Git credentials of projects: the named secret resolved each time Ferry fetches.
impl Engine {
    /// The credentials `project` is fetched with, if it names any: its secret resolved
    /// (project scope, then global), each use audited (project, name, version).
    pub async fn git_auth(
        &self,
        project: &ferry_store::Project,
    ) -> Result<Option<crate::git::GitAuth>> {
        match &project.git {
            Some(git) => Ok(Some(
                self.resolve_git_auth(&project.name, Some(project.id), git)
                    .await?,
            )),
            None => Ok(None),
        }
    }

    /// Resolves `git` for project `name`; `project_id` is `None` for a project being
    /// registered, which can only use a global secret (it has no scoped ones yet).
    pub async fn resolve_git_auth(
        &self,
        name: &str,
        project_id: Option<i64>,
        git: &ferry_store::GitCredentials,
    ) -> Result<crate::git::GitAuth> {
        let secret = SecretName::parse(&git.secret)
            .map_err(|e| crate::Error::Invalid(format!("git secret of project {name}: {e}")))?;
        // Project ids start at 1, so id 0 has no scoped values: only the global one is found.
        let (mut found, _) = self
            .store()
            .resolve_values(
                self.master_key(),
                project_id.unwrap_or(0),
                None,
                &[(SecretKind::Secret, secret)],
            )
            .await?;
        let Some(resolved) = found.pop() else {
            let scopes = match project_id {
                Some(_) => format!("for project {name} or globally"),
                None => "globally (a project being registered has no scoped secrets yet)".into(),
            };
            return Err(crate::Error::MissingSecret {
                message: format!(
                    "secret `{secret}`, the git credential of project {name}, is not set {scopes}; set it with `ferry secret set {secret}`",
                    secret = git.secret
                ),
            });
        };
        self.store()
            .record_git_credential_use(&Actor::system("git"), name, &resolved)
            .await?;
        let masker = Masker::new([resolved.value.expose()], true)
            .map_err(|e| crate::Error::Io(std::io::Error::other(format!("secret store: {e}"))))?;
        Ok(crate::git::GitAuth {
            username: git.username.clone(),
            password: resolved.value,
            masker,
        })
    }
}

/// Whether `git_ref` is a branch the pipeline deploys: `source.branches` is empty (any) or
/// one of its names or globs matches. Runs of other refs get no environment-scoped values.
pub fn deploys(spec: &PipelineSpec, git_ref: &str) -> bool {
    spec.source.branches.is_empty() || matches_any(&spec.source.branches, git_ref)
}

/// Branch globs as in `source.branches`: `*` stays within one path segment; an invalid
/// glob matches only itself.
fn matches_any(patterns: &[String], git_ref: &str) -> bool {
    let branch = git_ref.strip_prefix("refs/heads/").unwrap_or(git_ref);
    patterns.iter().any(|p| {
        globset::GlobBuilder::new(p)
            .literal_separator(true)
            .build()
            .map(|g| g.compile_matcher().is_match(branch))
            .unwrap_or(p == branch)
    })
}

/// One reference of the pipeline bound to the value it resolved to. A name mapped twice
/// (`{ name: S, as: A }` and `{ name: S, file: s.txt }`) is two references sharing one value.
struct Bound {
    reference: SecretRef,
    resolved: Arc<Resolved>,
}

/// The secrets and parameters of one run, resolved when its driver starts (and checked when
/// it is triggered). Holds the values in memory, zeroized on drop, for the run's lifetime.
pub(crate) struct RunSecrets {
    // Invariant: masks every secret value in `envs` and every Ferry token.
    masker: Arc<Masker>,
    envs: HashMap<String, Vec<Bound>>,
    /// Versions whose use by this run is already recorded (saves a write per action).
    recorded: std::sync::Mutex<std::collections::HashSet<(i64, i64)>>,
}

impl RunSecrets {
    /// Masks every secret value of the run and any Ferry token.
    pub(crate) fn masker(&self) -> &Arc<Masker> {
        &self.masker
    }

    /// `error` with the run's secret values masked in its message (it becomes the run's
    /// failure reason and a log line).
    pub(crate) fn mask_error(&self, error: crate::Error) -> crate::Error {
        let text = error.to_string();
        let masked = self.masker.mask_str(&text);
        if masked == text {
            error
        } else {
            let masked = masked.strip_prefix("i/o error: ").unwrap_or(&masked);
            crate::Error::Io(std::io::Error::other(masked.to_owned()))
        }
    }

    /// Adds to `env` what an action of `stage` in `environment` receives: variables, and
    /// files written (0600) into a fresh directory `FERRY_SECRETS_DIR` under `scratch`,
    /// removed when the returned guard drops. Records each value's first use by the run.
    pub(crate) async fn apply(
        &self,
        engine: &Engine,
        run_id: i64,
        environment: &str,
        stage: &str,
        scratch: &Path,
        env: &mut Vec<(String, String)>,
    ) -> Result<SecretFiles> {
        let mut files = SecretFiles(None);
        let mut used = Vec::new();
        for bound in self.envs.get(environment).into_iter().flatten() {
            if !bound.reference.applies_to_stage(stage) {
                continue;
            }
            let value = bound.resolved.value.expose();
            match &bound.reference.target {
                SecretTarget::Env(var) => {
                    env.push((var.clone(), String::from_utf8_lossy(value).into_owned()));
                }
                SecretTarget::File(rel) => {
                    let dir = match &files.0 {
                        Some(dir) => dir.clone(),
                        None => {
                            let dir = new_private_dir(scratch)?;
                            env.push((
                                "FERRY_SECRETS_DIR".to_owned(),
                                dir.to_string_lossy().into_owned(),
                            ));
                            files.0 = Some(dir.clone());
                            dir
                        }
                    };
                    write_private_file(&dir.join(rel), value)?;
                }
            }
            used.push(&*bound.resolved);
        }
        let key = |r: &Resolved| (r.id, r.version);
        let mut seen = std::collections::HashSet::new();
        used.retain(|r| {
            seen.insert(key(r))
                && !self
                    .recorded
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&key(r))
        });
        engine
            .store()
            .record_secret_use(&Actor::system("engine"), run_id, &used)
            .await?;
        self.recorded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(used.iter().map(|r| key(r)));
        Ok(files)
    }
}

/// A per-action directory of secret files, removed (best effort) when dropped.
pub(crate) struct SecretFiles(Option<PathBuf>);

impl Drop for SecretFiles {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn new_private_dir(scratch: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::create_dir_all(scratch)?;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = scratch.join(format!("secrets-{n}"));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn write_private_file(path: &Path, value: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(value)?;
    Ok(())
}

/// Resolves every secret and parameter the run's actions may receive, in every environment
/// of `spec`. `Ok(Err(reason))` names the first missing reference and its scopes: the run
/// must not start.
pub(crate) async fn resolve(
    engine: &Engine,
    spec: &PipelineSpec,
    pipeline_path: &str,
    project: &str,
    project_id: i64,
    git_ref: &str,
) -> Result<std::result::Result<RunSecrets, String>> {
    let deploys = deploys(spec, git_ref);
    let refs: Vec<(SecretKind, &SecretRef)> = spec
        .secrets
        .iter()
        .map(|r| (SecretKind::Secret, r))
        .chain(spec.params.iter().map(|r| (SecretKind::Param, r)))
        .filter(|(_, r)| r.branches.is_empty() || matches_any(&r.branches, git_ref))
        .collect();
    let mut envs = HashMap::new();
    let mut values: Vec<Vec<u8>> = Vec::new();
    if refs.is_empty() {
        return Ok(Ok(RunSecrets {
            masker: Arc::new(Masker::new(values, true).expect("no values")),
            envs,
            recorded: Default::default(),
        }));
    }
    // Each name is resolved once, however many references map it.
    let mut wanted: Vec<(SecretKind, SecretName)> = Vec::new();
    for (kind, r) in &refs {
        match SecretName::parse(&r.name) {
            Ok(name) => {
                if !wanted.iter().any(|(k, n)| k == kind && *n == name) {
                    wanted.push((*kind, name));
                }
            }
            Err(e) => return Ok(Err(format!("{pipeline_path}: {e}"))),
        }
    }
    for environment in &spec.environments {
        let scope_env = deploys.then_some(environment.name.as_str());
        let (found, missing) = engine
            .store()
            .resolve_values(engine.master_key(), project_id, scope_env, &wanted)
            .await?;
        if let Some((kind, name)) = missing.first() {
            let mut reason = format!(
                "{kind} `{name}` is not set for project {project} environment {env}, project {project} or globally (referenced by {pipeline_path}); set it with `ferry {kind} set {name} --project {project} --env {env}`",
                env = environment.name
            );
            if !deploys {
                reason.push_str(&format!(
                    "; runs of `{git_ref}` (not in source.branches) get no environment-scoped values"
                ));
            }
            return Ok(Err(reason));
        }
        let mut bound = Vec::new();
        for resolved in found {
            if resolved.kind == SecretKind::Secret {
                values.push(resolved.value.expose().to_vec());
            }
            let resolved = Arc::new(resolved);
            // Every reference of this name gets the value, in the order the file lists them.
            for (_, reference) in refs
                .iter()
                .filter(|(k, r)| *k == resolved.kind && r.name == resolved.name.as_str())
            {
                bound.push(Bound {
                    reference: (*reference).clone(),
                    resolved: Arc::clone(&resolved),
                });
            }
        }
        envs.insert(environment.name.clone(), bound);
    }
    // Values were checked when they were set; a shorter one cannot be in the store.
    let masker = Masker::new(values.iter(), true)
        .map_err(|e| crate::Error::Io(std::io::Error::other(format!("secret store: {e}"))))?;
    values.iter_mut().for_each(|v| v.zeroize());
    Ok(Ok(RunSecrets {
        masker: Arc::new(masker),
        envs,
        recorded: Default::default(),
    }))
}

/// Rewrites a file Ferry keeps (the plan JSON) with the run's secret values masked, and
/// returns the masked bytes. `terraform show -json` prints variable values in clear.
pub(crate) async fn mask_file(masker: &Masker, path: &Path) -> Result<Vec<u8>> {
    let bytes = tokio::fs::read(path).await?;
    if masker.is_empty() {
        return Ok(bytes);
    }
    let mut masked = masker.mask_bytes(&bytes);
    if masked != bytes && serde_json::from_slice::<serde_json::Value>(&masked).is_err() {
        // A value masked outside a string (a secret that is also a bare number) broke the
        // JSON: mask string by string instead, which keeps it valid.
        if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            mask_strings(masker, &mut value);
            masked = serde_json::to_vec(&value).unwrap_or_default();
        }
    }
    if masked != bytes {
        let tmp = path.with_extension("json.masking");
        tokio::fs::write(&tmp, &masked).await?;
        tokio::fs::rename(&tmp, path).await?;
    }
    Ok(masked)
}

fn mask_strings(masker: &Masker, value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => *s = masker.mask_str(s),
        serde_json::Value::Number(n) => {
            let text = n.to_string();
            if masker.mask_str(&text) != text {
                *value = serde_json::Value::String(masker.mask_str(&text));
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| mask_strings(masker, v)),
        serde_json::Value::Object(map) => {
            let entries = std::mem::take(map);
            for (k, mut v) in entries {
                mask_strings(masker, &mut v);
                map.insert(masker.mask_str(&k), v);
            }
        }
        serde_json::Value::Bool(_) | serde_json::Value::Null => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(branches: &[&str]) -> PipelineSpec {
        let yaml = format!(
            "version: 1\nname: p\nsource: {{ branches: [{}] }}\nterraform: {{ dir: . }}\n",
            branches
                .iter()
                .map(|b| format!("\"{b}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        ferry_spec::lower("ferry.yaml", &yaml).spec.expect("valid")
    }

    #[test]
    fn which_refs_a_pipeline_deploys() {
        assert!(deploys(&spec(&[]), "anything"));
        let s = spec(&["main", "release/*"]);
        for (git_ref, expected) in [
            ("main", true),
            ("refs/heads/main", true),
            ("release/1.2", true),
            ("release/1/2", false),
            ("feature/x", false),
            ("0123456789abcdef0123456789abcdef01234567", false),
        ] {
            assert_eq!(deploys(&s, git_ref), expected, "{git_ref}");
        }
        // An invalid glob matches only itself.
        assert!(matches_any(&["a[".to_owned()], "a["));
        assert!(!matches_any(&["a[".to_owned()], "ab"));
    }

    #[tokio::test]
    async fn plan_json_stays_valid_when_a_secret_is_a_bare_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        let masker = Masker::new(["31415926", "pw-secret-1"], true).unwrap();
        std::fs::write(&path, r#"{"pin":31415926,"pw":"pw-secret-1","n":2}"#).unwrap();
        let out = mask_file(&masker, &path).await.unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            value,
            serde_json::json!({ "pin": "***", "pw": "***", "n": 2 })
        );
        assert_eq!(std::fs::read(&path).unwrap(), out);
        // The usual case: masked in place, byte for byte otherwise.
        std::fs::write(&path, r#"{"pw": "pw-secret-1"}"#).unwrap();
        let out = mask_file(&masker, &path).await.unwrap();
        assert_eq!(out, br#"{"pw": "***"}"#);
    }

    #[test]
    fn errors_lose_the_run_s_secret_values() {
        let secrets = RunSecrets {
            masker: Arc::new(Masker::new(["hunter2-hunter2"], true).unwrap()),
            envs: HashMap::new(),
            recorded: Default::default(),
        };
        let error = crate::Error::Io(std::io::Error::other(
            "terraform said: bad password hunter2-hunter2",
        ));
        assert_eq!(
            secrets.mask_error(error).to_string(),
            "i/o error: terraform said: bad password ***"
        );
        let clean = crate::Error::ShuttingDown;
        assert_eq!(
            secrets.mask_error(clean).to_string(),
            "the server is shutting down"
        );
    }
}
