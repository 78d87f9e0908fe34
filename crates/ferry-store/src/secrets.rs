//! Secrets and parameters: named values scoped globally, to a project, or to a project's
//! environment (the narrowest scope wins at resolution), each value kept as a sealed
//! version (AES-256-GCM under its own data key, wrapped by the master key: the envelope
//! scheme of state versions). A secret's value leaves this module only as a
//! [`ferry_secrets::Plaintext`], and only through [`Store::resolve_values`] (for a run) or
//! [`Store::param_value`] (parameters only); listings carry metadata only.
//!
//! Every set and remove is audited with the name, scope and version, never the value; each
//! use by a run is recorded in `run_secrets` and audited the same way.

use std::fmt;

use ferry_secrets::envelope::{open, seal, Sealed};
use ferry_secrets::{MasterKey, Plaintext};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::audit::AuditEntry;
use crate::{now, Actor, Error, Result, Store};

/// Longest accepted name.
pub const MAX_NAME_LEN: usize = 128;
/// Largest accepted value (secrets and parameters are configuration, not files).
pub const MAX_VALUE_LEN: usize = 64 * 1024;

/// A secret (write-only) or a parameter (readable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecretKind {
    Secret,
    Param,
}

impl SecretKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretKind::Secret => "secret",
            SecretKind::Param => "param",
        }
    }

    /// The smallest accepted value: secrets shorter than the masker's minimum would mask
    /// ordinary text everywhere.
    pub fn min_len(self) -> usize {
        match self {
            SecretKind::Secret => ferry_secrets::mask::MIN_SECRET_LEN,
            SecretKind::Param => 1,
        }
    }
}

impl fmt::Display for SecretKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name usable as an environment variable: `[A-Za-z_][A-Za-z0-9_]*`, at most 128 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretName(String);

impl SecretName {
    pub fn parse(name: &str) -> std::result::Result<SecretName, String> {
        let mut chars = name.chars();
        let valid_start = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_');
        if !valid_start || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "invalid name `{}`: use letters, digits and `_`, not starting with a digit (like an environment variable)",
                name.escape_debug()
            ));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(format!("name is longer than {MAX_NAME_LEN} characters"));
        }
        Ok(SecretName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a value applies. The narrowest wins: environment, then project, then global.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Global,
    Project(String),
    Environment {
        project: String,
        environment: String,
    },
}

impl Scope {
    /// From optional `--project` and `--env`; an environment needs a project.
    pub fn from_parts(
        project: Option<&str>,
        environment: Option<&str>,
    ) -> std::result::Result<Scope, String> {
        fn blank(s: Option<&str>) -> Option<&str> {
            s.filter(|s| !s.is_empty())
        }
        match (blank(project), blank(environment)) {
            (None, None) => Ok(Scope::Global),
            (Some(p), None) => Ok(Scope::Project(p.to_owned())),
            (Some(p), Some(e)) => Ok(Scope::Environment {
                project: p.to_owned(),
                environment: e.to_owned(),
            }),
            (None, Some(_)) => Err("unknown scope: an environment scope needs a project".into()),
        }
    }

    pub fn project(&self) -> Option<&str> {
        match self {
            Scope::Global => None,
            Scope::Project(p) | Scope::Environment { project: p, .. } => Some(p),
        }
    }

    pub fn environment(&self) -> Option<&str> {
        match self {
            Scope::Environment { environment, .. } => Some(environment),
            _ => None,
        }
    }
}

impl fmt::Display for Scope {
    /// `global`, `project P` or `project P environment E`: for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Global => f.write_str("global"),
            Scope::Project(p) => write!(f, "project {p}"),
            Scope::Environment {
                project,
                environment,
            } => write!(f, "project {project} environment {environment}"),
        }
    }
}

/// Checks a value's length for its kind; the message never quotes the value.
pub fn check_value(kind: SecretKind, value: &[u8]) -> std::result::Result<(), String> {
    if value.is_empty() {
        return Err(format!("the {kind} value is empty"));
    }
    // Characters, as the API's schema counts them (never fewer than bytes).
    let length = std::str::from_utf8(value).map_or(value.len(), |text| text.chars().count());
    if length < kind.min_len() {
        return Err(format!(
            "the {kind} value is {length} characters long; at least {} are required (shorter values would mask ordinary text)",
            kind.min_len()
        ));
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(format!(
            "the {kind} value is longer than {MAX_VALUE_LEN} bytes"
        ));
    }
    Ok(())
}

/// Metadata of a secret or parameter. Never its value.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretMeta {
    pub id: i64,
    pub kind: SecretKind,
    pub name: String,
    pub scope: Scope,
    pub version: i64,
    pub created_at: String,
    pub created_by: String,
    pub updated_at: String,
    pub updated_by: String,
    pub last_used_at: Option<String>,
    pub last_used_run: Option<i64>,
}

/// A value resolved for a run: which row and version it came from, and the value.
pub struct Resolved {
    pub id: i64,
    pub kind: SecretKind,
    pub name: SecretName,
    pub scope: Scope,
    pub version: i64,
    pub value: Plaintext,
}

impl fmt::Debug for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolved")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("scope", &self.scope)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// The sealing context binds a ciphertext to its row, kind, name and version: copied into
/// another row it does not open.
fn context(kind: SecretKind, secret_id: i64, name: &str, version: i64) -> Vec<u8> {
    format!("ferry/{kind}/{secret_id}/{name}/v{version}").into_bytes()
}

fn scope_key(project_id: Option<i64>, environment: Option<&str>) -> String {
    match (project_id, environment) {
        (None, _) => String::new(),
        (Some(p), None) => p.to_string(),
        (Some(p), Some(e)) => format!("{p}/{e}"),
    }
}

fn parse_kind(s: &str) -> Result<SecretKind> {
    match s {
        "secret" => Ok(SecretKind::Secret),
        "param" => Ok(SecretKind::Param),
        other => Err(Error::Corrupt {
            table: "secrets",
            message: format!("unknown kind `{other}`"),
        }),
    }
}

const META_SELECT: &str = "SELECT s.*, p.name AS project FROM secrets s \
     LEFT JOIN projects p ON p.id = s.project_id";

fn meta_row(r: &SqliteRow) -> Result<SecretMeta> {
    let project: Option<String> = r.get("project");
    let environment: Option<String> = r.get("environment");
    let scope = match (project, environment) {
        (None, _) => Scope::Global,
        (Some(p), None) => Scope::Project(p),
        (Some(project), Some(environment)) => Scope::Environment {
            project,
            environment,
        },
    };
    Ok(SecretMeta {
        id: r.get("id"),
        kind: parse_kind(r.get("kind"))?,
        name: r.get("name"),
        scope,
        version: r.get("version"),
        created_at: r.get("created_at"),
        created_by: r.get("created_by"),
        updated_at: r.get("updated_at"),
        updated_by: r.get("updated_by"),
        last_used_at: r.get("last_used_at"),
        last_used_run: r.get("last_used_run"),
    })
}

fn audit_details(meta: &SecretMeta) -> serde_json::Value {
    serde_json::json!({
        "kind": meta.kind.as_str(),
        "name": meta.name,
        "scope": meta.scope.to_string(),
        "version": meta.version,
    })
}

fn target(kind: SecretKind, scope: &Scope, name: &str) -> String {
    match scope {
        Scope::Global => format!("{kind}/{name}"),
        Scope::Project(p) => format!("{kind}/{p}/{name}"),
        Scope::Environment {
            project,
            environment,
        } => format!("{kind}/{project}/{environment}/{name}"),
    }
}

async fn project_id(conn: &mut SqliteConnection, scope: &Scope) -> Result<Option<i64>> {
    let Some(name) = scope.project() else {
        return Ok(None);
    };
    let row = sqlx::query("SELECT id FROM projects WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(r) => Ok(Some(r.get(0))),
        None => Err(Error::NotFound {
            what: "project",
            id: name.to_owned(),
        }),
    }
}

impl Store {
    /// Sets a value (a new version; the first one creates the entry, also after a remove).
    /// Audited with name, scope and version.
    pub async fn set_secret(
        &self,
        actor: &Actor,
        master: &MasterKey,
        kind: SecretKind,
        scope: &Scope,
        name: &SecretName,
        value: &[u8],
    ) -> Result<SecretMeta> {
        check_value(kind, value).map_err(Error::Invalid)?;
        let mut tx = self.write().await?;
        let pid = project_id(&mut tx, scope).await?;
        let key = scope_key(pid, scope.environment());
        let at = now();
        let existing = sqlx::query("SELECT id, version, deleted_at FROM secrets WHERE kind = ? AND scope_key = ? AND name = ?")
            .bind(kind.as_str())
            .bind(&key)
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let (id, version) = match existing {
            Some(r) => {
                let id: i64 = r.get(0);
                let version = r.get::<i64, _>(1) + 1;
                let revived = r.get::<Option<String>, _>(2).is_some();
                // Set again after a remove: it is created anew (its versions go on).
                sqlx::query(
                    "UPDATE secrets SET version = ?, updated_at = ?, updated_by = ?, deleted_at = NULL, deleted_by = NULL, \
                     created_at = CASE WHEN ? THEN ? ELSE created_at END, \
                     created_by = CASE WHEN ? THEN ? ELSE created_by END WHERE id = ?",
                )
                    .bind(version)
                    .bind(&at)
                    .bind(&actor.name)
                    .bind(revived)
                    .bind(&at)
                    .bind(revived)
                    .bind(&actor.name)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                (id, version)
            }
            None => {
                let r = sqlx::query(
                    "INSERT INTO secrets (kind, name, project_id, environment, scope_key, version, created_at, created_by, updated_at, updated_by) \
                     VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?) RETURNING id",
                )
                .bind(kind.as_str())
                .bind(name.as_str())
                .bind(pid)
                .bind(scope.environment())
                .bind(&key)
                .bind(&at)
                .bind(&actor.name)
                .bind(&at)
                .bind(&actor.name)
                .fetch_one(&mut *tx)
                .await?;
                (r.get(0), 1)
            }
        };
        let sealed = seal(master, value, &context(kind, id, name.as_str(), version));
        sqlx::query("INSERT INTO secret_versions (secret_id, version, key_id, sealed, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(id)
            .bind(version)
            .bind(master.id())
            .bind(sealed.to_bytes())
            .bind(&at)
            .bind(&actor.name)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(&format!("{META_SELECT} WHERE s.id = ?"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let meta = meta_row(&row)?;
        let entry = AuditEntry::new(&format!("{kind}.set"), target(kind, scope, name.as_str()))
            .details(audit_details(&meta));
        let record = self.audit_in(&mut tx, actor, entry).await?;
        tx.commit().await?;
        self.audit_committed(&record)?;
        Ok(meta)
    }

    /// Removes a value: it no longer resolves, and every stored version of it is erased
    /// (the metadata and the audit trail stay). Audited.
    pub async fn remove_secret(
        &self,
        actor: &Actor,
        kind: SecretKind,
        scope: &Scope,
        name: &SecretName,
    ) -> Result<SecretMeta> {
        let mut tx = self.write().await?;
        let pid = project_id(&mut tx, scope).await?;
        let key = scope_key(pid, scope.environment());
        let not_found = || Error::NotFound {
            what: kind.as_str(),
            id: format!("{name} ({scope})"),
        };
        let row = sqlx::query(&format!(
            "{META_SELECT} WHERE s.kind = ? AND s.scope_key = ? AND s.name = ? AND s.deleted_at IS NULL"
        ))
        .bind(kind.as_str())
        .bind(&key)
        .bind(name.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(not_found)?;
        let meta = meta_row(&row)?;
        sqlx::query("UPDATE secrets SET deleted_at = ?, deleted_by = ? WHERE id = ?")
            .bind(now())
            .bind(&actor.name)
            .bind(meta.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE secret_versions SET sealed = NULL, key_id = NULL WHERE secret_id = ?")
            .bind(meta.id)
            .execute(&mut *tx)
            .await?;
        let entry = AuditEntry::new(
            &format!("{kind}.remove"),
            target(kind, scope, name.as_str()),
        )
        .details(audit_details(&meta));
        let record = self.audit_in(&mut tx, actor, entry).await?;
        tx.commit().await?;
        self.audit_committed(&record)?;
        Ok(meta)
    }

    /// Metadata of every value of `kind` that is not removed, optionally only those of one
    /// project (its project and environment scopes) plus the global ones.
    pub async fn list_secrets(
        &self,
        kind: SecretKind,
        project: Option<&str>,
    ) -> Result<Vec<SecretMeta>> {
        let rows = sqlx::query(&format!(
            "{META_SELECT} WHERE s.kind = ? AND s.deleted_at IS NULL AND (? IS NULL OR p.name = ? OR s.project_id IS NULL) \
             ORDER BY s.name, s.scope_key"
        ))
        .bind(kind.as_str())
        .bind(project)
        .bind(project)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(meta_row).collect()
    }

    /// A parameter's current value at exactly `scope` (parameters are readable; secrets are
    /// not, so there is no such method for them).
    pub async fn param_value(
        &self,
        master: &MasterKey,
        scope: &Scope,
        name: &SecretName,
    ) -> Result<(SecretMeta, Plaintext)> {
        let mut conn = self.pool.acquire().await?;
        let pid = project_id(&mut conn, scope).await?;
        let key = scope_key(pid, scope.environment());
        let row = sqlx::query(&format!(
            "{META_SELECT} WHERE s.kind = 'param' AND s.scope_key = ? AND s.name = ? AND s.deleted_at IS NULL"
        ))
        .bind(&key)
        .bind(name.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| Error::NotFound {
            what: "param",
            id: format!("{name} ({scope})"),
        })?;
        let meta = meta_row(&row)?;
        let value = open_version(&mut conn, master, &meta).await?;
        Ok((meta, value))
    }

    /// Resolves names for a run of `project` in `environment`: for each, the narrowest
    /// scope that has it (environment, then project, then global). With `environment`
    /// `None` (a run from a branch the pipeline does not deploy) environment-scoped values
    /// are never used. Returns the values found and the names that have none.
    pub async fn resolve_values(
        &self,
        master: &MasterKey,
        project_id: i64,
        environment: Option<&str>,
        wanted: &[(SecretKind, SecretName)],
    ) -> Result<(Vec<Resolved>, Vec<(SecretKind, SecretName)>)> {
        let mut conn = self.pool.acquire().await?;
        let mut keys = Vec::new();
        if let Some(env) = environment {
            keys.push(scope_key(Some(project_id), Some(env)));
        }
        keys.push(scope_key(Some(project_id), None));
        keys.push(String::new());
        let (mut found, mut missing) = (Vec::new(), Vec::new());
        for (kind, name) in wanted {
            let mut hit = None;
            for key in &keys {
                let row = sqlx::query(&format!(
                    "{META_SELECT} WHERE s.kind = ? AND s.scope_key = ? AND s.name = ? AND s.deleted_at IS NULL"
                ))
                .bind(kind.as_str())
                .bind(key)
                .bind(name.as_str())
                .fetch_optional(&mut *conn)
                .await?;
                if let Some(row) = row {
                    hit = Some(meta_row(&row)?);
                    break;
                }
            }
            match hit {
                Some(meta) => {
                    let value = open_version(&mut conn, master, &meta).await?;
                    found.push(Resolved {
                        id: meta.id,
                        kind: meta.kind,
                        name: name.clone(),
                        scope: meta.scope,
                        version: meta.version,
                        value,
                    });
                }
                None => missing.push((*kind, name.clone())),
            }
        }
        Ok((found, missing))
    }

    /// Records that run `run_id` used these versions: one `run_secrets` row and one audit
    /// entry (name, scope, version; never the value) per value, the first time only.
    pub async fn record_secret_use(
        &self,
        actor: &Actor,
        run_id: i64,
        used: &[&Resolved],
    ) -> Result<()> {
        if used.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        let at = now();
        let mut records = Vec::new();
        for r in used {
            let inserted = sqlx::query(
                "INSERT OR IGNORE INTO run_secrets (run_id, secret_id, version, used_at) VALUES (?, ?, ?, ?)",
            )
            .bind(run_id)
            .bind(r.id)
            .bind(r.version)
            .bind(&at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                continue;
            }
            sqlx::query("UPDATE secrets SET last_used_at = ?, last_used_run = ? WHERE id = ?")
                .bind(&at)
                .bind(run_id)
                .bind(r.id)
                .execute(&mut *tx)
                .await?;
            let entry = AuditEntry::new(
                &format!("{}.use", r.kind),
                target(r.kind, &r.scope, r.name.as_str()),
            )
            .details(serde_json::json!({
                "kind": r.kind.as_str(),
                "name": r.name.as_str(),
                "scope": r.scope.to_string(),
                "version": r.version,
                "run_id": run_id,
            }));
            records.push(self.audit_in(&mut tx, actor, entry).await?);
        }
        tx.commit().await?;
        for record in &records {
            self.audit_committed(record)?;
        }
        Ok(())
    }

    /// Records that Ferry used `resolved` as the git credential of `project` (a fetch): one
    /// audit entry (project, name, scope, version; never the value) per use.
    pub async fn record_git_credential_use(
        &self,
        actor: &Actor,
        project: &str,
        resolved: &Resolved,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query("UPDATE secrets SET last_used_at = ? WHERE id = ?")
            .bind(now())
            .bind(resolved.id)
            .execute(&mut *tx)
            .await?;
        let entry = AuditEntry::new(
            &format!("{}.use", resolved.kind),
            target(resolved.kind, &resolved.scope, resolved.name.as_str()),
        )
        .details(serde_json::json!({
            "kind": resolved.kind.as_str(),
            "name": resolved.name.as_str(),
            "scope": resolved.scope.to_string(),
            "version": resolved.version,
            "project": project,
            "purpose": "git",
        }));
        let record = self.audit_in(&mut tx, actor, entry).await?;
        tx.commit().await?;
        self.audit_committed(&record)
    }

    /// The versions a run used: (kind, name, scope, version).
    pub async fn run_secret_versions(
        &self,
        run_id: i64,
    ) -> Result<Vec<(SecretKind, String, Scope, i64)>> {
        let rows = sqlx::query(&format!(
            "SELECT rs.version AS used_version, x.* FROM run_secrets rs JOIN ({META_SELECT}) x ON x.id = rs.secret_id \
             WHERE rs.run_id = ? ORDER BY x.name"
        ))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let meta = meta_row(r)?;
                Ok((meta.kind, meta.name, meta.scope, r.get("used_version")))
            })
            .collect()
    }
}

async fn open_version(
    conn: &mut SqliteConnection,
    master: &MasterKey,
    meta: &SecretMeta,
) -> Result<Plaintext> {
    let corrupt = |message: String| Error::Corrupt {
        table: "secret_versions",
        message,
    };
    let row = sqlx::query("SELECT sealed FROM secret_versions WHERE secret_id = ? AND version = ?")
        .bind(meta.id)
        .bind(meta.version)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| {
            corrupt(format!(
                "{} {} has no version {}",
                meta.kind, meta.name, meta.version
            ))
        })?;
    let bytes: Option<Vec<u8>> = row.get(0);
    let bytes = bytes.ok_or_else(|| corrupt(format!("{} {} was erased", meta.kind, meta.name)))?;
    let sealed = Sealed::from_bytes(&bytes).map_err(|e| corrupt(e.to_string()))?;
    open(
        master,
        &sealed,
        &context(meta.kind, meta.id, &meta.name, meta.version),
    )
    .map_err(|e| {
        corrupt(format!(
            "{} {} version {}: {e}",
            meta.kind, meta.name, meta.version
        ))
    })
}

/// Re-wraps every stored version from `old` to `new` inside the caller's transaction (part
/// of a master key rotation). Returns how many were re-sealed.
pub(crate) async fn rewrap(
    conn: &mut SqliteConnection,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<usize> {
    let rows = sqlx::query(
        "SELECT v.id, v.version, v.sealed, s.id AS secret_id, s.kind, s.name FROM secret_versions v \
         JOIN secrets s ON s.id = v.secret_id WHERE v.sealed IS NOT NULL",
    )
    .fetch_all(&mut *conn)
    .await?;
    let corrupt = |message: String| Error::Corrupt {
        table: "secret_versions",
        message,
    };
    for r in &rows {
        let kind = parse_kind(r.get("kind"))?;
        let name: String = r.get("name");
        let version: i64 = r.get("version");
        let ctx = context(kind, r.get("secret_id"), &name, version);
        let sealed =
            Sealed::from_bytes(r.get::<&[u8], _>("sealed")).map_err(|e| corrupt(e.to_string()))?;
        let plain = open(old, &sealed, &ctx)
            .map_err(|e| corrupt(format!("{kind} {name} version {version}: {e}")))?;
        let resealed = seal(new, plain.expose(), &ctx).to_bytes();
        sqlx::query("UPDATE secret_versions SET sealed = ?, key_id = ? WHERE id = ?")
            .bind(resealed)
            .bind(new.id())
            .bind(r.get::<i64, _>("id"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_environment_variable_names() {
        for ok in ["DB_PASSWORD", "_x", "a1", "TF_VAR_db"] {
            assert!(SecretName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1abc",
            "a-b",
            "a b",
            "é",
            "a.b",
            "a=b",
            &"x".repeat(129),
        ] {
            assert!(SecretName::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            SecretName::parse("db-pass").unwrap_err(),
            "invalid name `db-pass`: use letters, digits and `_`, not starting with a digit (like an environment variable)"
        );
    }

    #[test]
    fn scopes_and_values() {
        assert_eq!(Scope::from_parts(None, None), Ok(Scope::Global));
        assert_eq!(
            Scope::from_parts(Some("p"), Some("prod"))
                .unwrap()
                .to_string(),
            "project p environment prod"
        );
        assert!(Scope::from_parts(None, Some("prod"))
            .unwrap_err()
            .starts_with("unknown scope"));
        assert!(check_value(SecretKind::Secret, b"abc").is_err());
        assert!(check_value(SecretKind::Secret, b"")
            .unwrap_err()
            .contains("empty"));
        assert!(check_value(SecretKind::Secret, b"abcd").is_ok());
        assert!(check_value(SecretKind::Param, b"x").is_ok());
        assert!(check_value(SecretKind::Param, &vec![b'x'; MAX_VALUE_LEN + 1]).is_err());
    }
}
