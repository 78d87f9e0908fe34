//! Named API tokens and projects: the small, rarely-written tables.

use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::audit::AuditEntry;
use crate::{now, Actor, Error, GitCredentials, Project, Result, Store, Token};

pub(crate) fn token_row(r: &SqliteRow) -> Token {
    let scope = match (
        r.get::<Option<i64>, _>("run_id"),
        r.get::<Option<i64>, _>("scope_project_id"),
    ) {
        (Some(run_id), Some(project_id)) => Some(crate::TokenScope {
            run_id,
            project_id,
            environment: r
                .get::<Option<String>, _>("scope_environment")
                .unwrap_or_default(),
        }),
        _ => None,
    };
    Token {
        id: r.get("id"),
        name: r.get("name"),
        scope,
        hint: r.get("hint"),
        admin: r.get::<i64, _>("admin") != 0,
        created_at: r.get("created_at"),
        created_by: r.get("created_by"),
        revoked_at: r.get("revoked_at"),
        last_used_at: r.get("last_used_at"),
        user_id: r.get("user_id"),
        expires_at: r.get("expires_at"),
    }
}

fn project_row(r: &SqliteRow) -> Project {
    Project {
        id: r.get("id"),
        name: r.get("name"),
        repo: r.get("repo"),
        created_at: r.get("created_at"),
        created_by: r.get("created_by"),
        git: match (
            r.get::<Option<String>, _>("git_username"),
            r.get::<Option<String>, _>("git_secret"),
        ) {
            (Some(username), Some(secret)) => Some(GitCredentials { username, secret }),
            _ => None,
        },
    }
}

impl Store {
    /// Stores a token by its hash. The plaintext never reaches this crate.
    pub async fn create_token(
        &self,
        actor: &Actor,
        name: &str,
        hash: &str,
        hint: &str,
        admin: bool,
    ) -> Result<Token> {
        let mut tx = self.write().await?;
        let exists = sqlx::query("SELECT 1 FROM tokens WHERE name = ? AND revoked_at IS NULL")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Err(Error::AlreadyExists {
                what: "token",
                id: name.to_owned(),
            });
        }
        let row = sqlx::query(
            "INSERT INTO tokens (name, hash, hint, admin, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(name)
        .bind(hash)
        .bind(hint)
        .bind(admin as i64)
        .bind(now())
        .bind(&actor.name)
        .fetch_one(&mut *tx)
        .await?;
        let token = token_row(&row);
        let entry = AuditEntry::new("token.create", format!("token/{name}"))
            .details(serde_json::json!({ "admin": admin }));
        let record = self.audit_in(&mut tx, actor, entry).await?;
        tx.commit().await?;
        self.audit_committed(&record)?;
        Ok(token)
    }

    /// The active (not revoked) token with this hash.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<Token>> {
        let row = sqlx::query("SELECT * FROM tokens WHERE hash = ? AND revoked_at IS NULL")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(token_row))
    }

    /// Records that a token was used, at most once a minute per token so reads stay reads.
    pub async fn touch_token(&self, id: i64) -> Result<()> {
        let cutoff = (chrono::Utc::now() - chrono::Duration::seconds(60))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        sqlx::query("UPDATE tokens SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)")
            .bind(now())
            .bind(id)
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Revokes every credential minted for a run's actions.
    pub async fn revoke_run_tokens(&self, run_id: i64) -> Result<()> {
        sqlx::query("UPDATE tokens SET revoked_at = ? WHERE run_id = ? AND revoked_at IS NULL")
            .bind(now())
            .bind(run_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Named tokens (not the per-action run credentials).
    pub async fn list_tokens(&self) -> Result<Vec<Token>> {
        let rows = sqlx::query("SELECT * FROM tokens WHERE run_id IS NULL ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(token_row).collect())
    }

    pub async fn count_tokens(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM tokens")
            .fetch_one(&self.pool)
            .await?
            .get(0))
    }

    pub async fn revoke_token(&self, actor: &Actor, name: &str) -> Result<Token> {
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL RETURNING *",
        )
        .bind(now())
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::NotFound {
            what: "token",
            id: name.to_owned(),
        })?;
        let record = self
            .audit_in(
                &mut tx,
                actor,
                AuditEntry::new("token.revoke", format!("token/{name}")),
            )
            .await?;
        tx.commit().await?;
        self.audit_committed(&record)?;
        Ok(token_row(&row))
    }

    pub async fn create_project(&self, actor: &Actor, name: &str, repo: &str) -> Result<Project> {
        self.create_project_with(actor, name, repo, None).await
    }

    /// Registers a project, with the git credentials Ferry fetches it with (names only).
    pub async fn create_project_with(
        &self,
        actor: &Actor,
        name: &str,
        repo: &str,
        git: Option<&GitCredentials>,
    ) -> Result<Project> {
        let mut tx = self.write().await?;
        if sqlx::query("SELECT 1 FROM projects WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .is_some()
        {
            return Err(Error::AlreadyExists {
                what: "project",
                id: name.to_owned(),
            });
        }
        let row = sqlx::query("INSERT INTO projects (name, repo, created_at, created_by, git_username, git_secret) VALUES (?, ?, ?, ?, ?, ?) RETURNING *")
            .bind(name)
            .bind(repo)
            .bind(now())
            .bind(&actor.name)
            .bind(git.map(|g| &g.username))
            .bind(git.map(|g| &g.secret))
            .fetch_one(&mut *tx)
            .await?;
        let mut details = serde_json::json!({ "repo": repo });
        if let Some(git) = git {
            details["git_username"] = git.username.clone().into();
            details["git_secret"] = git.secret.clone().into();
        }
        let entry = AuditEntry::new("project.create", format!("project/{name}")).details(details);
        let record = self.audit_in(&mut tx, actor, entry).await?;
        tx.commit().await?;
        self.audit_committed(&record)?;
        Ok(project_row(&row))
    }

    pub async fn project(&self, name: &str) -> Result<Project> {
        sqlx::query("SELECT * FROM projects WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| project_row(&r))
            .ok_or_else(|| Error::NotFound {
                what: "project",
                id: name.to_owned(),
            })
    }

    /// Sets (or, with `None`, clears) the git credentials a project is fetched with.
    /// Audited as `project.update` with the username and the secret's name.
    pub async fn set_project_git(
        &self,
        actor: &Actor,
        name: &str,
        git: Option<&GitCredentials>,
    ) -> Result<Project> {
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "UPDATE projects SET git_username = ?, git_secret = ? WHERE name = ? RETURNING *",
        )
        .bind(git.map(|g| &g.username))
        .bind(git.map(|g| &g.secret))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::NotFound {
            what: "project",
            id: name.to_owned(),
        })?;
        let entry = AuditEntry::new("project.update", format!("project/{name}")).details(
            serde_json::json!({
                "git_username": git.map(|g| &g.username),
                "git_secret": git.map(|g| &g.secret),
            }),
        );
        let record = self.audit_in(&mut tx, actor, entry).await?;
        tx.commit().await?;
        self.audit_committed(&record)?;
        Ok(project_row(&row))
    }

    pub async fn list_projects(&self) -> Result<Vec<Project>> {
        let rows = sqlx::query("SELECT * FROM projects ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(project_row).collect())
    }
}

impl Store {
    /// The name of the project with this id (for a run credential's scope).
    pub async fn project_name(&self, id: i64) -> Result<String> {
        sqlx::query("SELECT name FROM projects WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.get(0))
            .ok_or_else(|| Error::NotFound {
                what: "project",
                id: id.to_string(),
            })
    }
}
