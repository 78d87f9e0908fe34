//! Users, teams, role grants, scoped tokens, browser sessions and failed logins: the tables
//! behind "who is calling and what may they do" (PRODUCT.md §4 invariant 6).
//!
//! Password hashes and token hashes arrive already hashed (argon2id and SHA-256, by
//! `ferry-secrets`); this module never sees a password or a token. Every change made for an
//! [`Actor`] writes its audit row in the same transaction, like the rest of the store.

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use ferry_core::{Grant, Role};

use crate::audit::AuditEntry;
use crate::tokens::token_row;
use crate::{now, parse, Actor, Error, Result, Store, Token};

/// A local user.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: i64,
    pub name: String,
    /// The argon2id PHC string; `None` when the user cannot log in with a password.
    pub password_hash: Option<String>,
    pub disabled: bool,
    pub created_at: String,
    pub created_by: String,
}

/// A team and the names of its members.
#[derive(Debug, Clone, PartialEq)]
pub struct Team {
    pub name: String,
    pub members: Vec<String>,
    pub created_at: String,
}

/// Who holds a grant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    User(String),
    Team(String),
}

impl Subject {
    fn kind(&self) -> &'static str {
        match self {
            Subject::User(_) => "user",
            Subject::Team(_) => "team",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Subject::User(n) | Subject::Team(n) => n,
        }
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::User(n) => write!(f, "user/{n}"),
            Subject::Team(n) => write!(f, "team/{n}"),
        }
    }
}

/// What a new personal or service token carries.
#[derive(Debug, Clone)]
pub struct NewTokenRow<'a> {
    pub name: &'a str,
    pub hash: &'a str,
    pub hint: &'a str,
    /// A service token with the global admin flag (the bootstrap `admin` token).
    pub admin: bool,
    /// A personal token acts as this user.
    pub user: Option<&'a str>,
    /// A service token's grants, or the limit a personal token puts on its user's grants.
    pub scopes: &'a [Grant],
    pub expires_at: Option<&'a str>,
}

/// A live browser session and its user.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: i64,
    pub user: User,
    pub created_at: String,
    pub expires_at: String,
}

fn user_row(r: &SqliteRow) -> User {
    User {
        id: r.get("id"),
        name: r.get("name"),
        password_hash: r.get("password_hash"),
        disabled: r.get::<i64, _>("disabled") != 0,
        created_at: r.get("created_at"),
        created_by: r.get("created_by"),
    }
}

fn grant_row(r: &SqliteRow) -> Result<Grant> {
    Ok(Grant {
        role: parse::<Role>("role_grants", &r.get::<String, _>("role"))?,
        project: r.get("project"),
        environment: r.get("environment"),
    })
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn user_in(conn: &mut SqliteConnection, name: &str) -> Result<User> {
    sqlx::query("SELECT * FROM users WHERE name = ?")
        .bind(name)
        .fetch_optional(conn)
        .await?
        .map(|r| user_row(&r))
        .ok_or_else(|| Error::NotFound {
            what: "user",
            id: name.to_owned(),
        })
}

async fn team_id_in(conn: &mut SqliteConnection, name: &str) -> Result<i64> {
    sqlx::query("SELECT id FROM teams WHERE name = ?")
        .bind(name)
        .fetch_optional(conn)
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| Error::NotFound {
            what: "team",
            id: name.to_owned(),
        })
}

async fn subject_id_in(conn: &mut SqliteConnection, subject: &Subject) -> Result<i64> {
    match subject {
        Subject::User(name) => Ok(user_in(conn, name).await?.id),
        Subject::Team(name) => team_id_in(conn, name).await,
    }
}

/// The teams `user` belongs to, by name (empty for an unknown user or a service token).
pub(crate) async fn user_teams_in(conn: &mut SqliteConnection, user: &str) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT t.name FROM teams t JOIN team_members m ON m.team_id = t.id \
         JOIN users u ON u.id = m.user_id WHERE u.name = ? ORDER BY t.name",
    )
    .bind(user)
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

impl Store {
    /// Creates a user. `password_hash` is an argon2id PHC string from `ferry-secrets`.
    pub async fn create_user(
        &self,
        actor: &Actor,
        name: &str,
        password_hash: Option<&str>,
    ) -> Result<User> {
        let mut tx = self.write().await?;
        if sqlx::query("SELECT 1 FROM users WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .is_some()
        {
            return Err(Error::AlreadyExists {
                what: "user",
                id: name.to_owned(),
            });
        }
        // A (non-admin) service token acts under its own name: a user of the same name would
        // share its approvals and team memberships.
        if service_token_named(&mut tx, name).await? {
            return Err(Error::Conflict(format!(
                "a service token is named `{name}`; revoke it or choose another user name"
            )));
        }
        let row = sqlx::query(
            "INSERT INTO users (name, password_hash, disabled, created_at, created_by) \
             VALUES (?, ?, 0, ?, ?) RETURNING *",
        )
        .bind(name)
        .bind(password_hash)
        .bind(now())
        .bind(&actor.name)
        .fetch_one(&mut *tx)
        .await?;
        let entry = AuditEntry::new("user.create", format!("user/{name}"));
        let record = self.audit_in(&mut tx, actor, entry).await?;
        tx.commit().await?;
        self.audit_committed(&record)?;
        Ok(user_row(&row))
    }

    pub async fn user(&self, name: &str) -> Result<User> {
        let mut conn = self.pool.acquire().await?;
        user_in(&mut conn, name).await
    }

    pub async fn user_by_id(&self, id: i64) -> Result<User> {
        sqlx::query("SELECT * FROM users WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| user_row(&r))
            .ok_or_else(|| Error::NotFound {
                what: "user",
                id: id.to_string(),
            })
    }

    pub async fn list_users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(user_row).collect())
    }

    pub async fn count_users(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?
            .get(0))
    }

    /// Disables or re-enables a user. Disabling ends the user's sessions at once; their
    /// personal tokens stop working while the user is disabled.
    pub async fn set_user_disabled(
        &self,
        actor: &Actor,
        name: &str,
        disabled: bool,
    ) -> Result<User> {
        let mut tx = self.write().await?;
        let user = user_in(&mut tx, name).await?;
        sqlx::query("UPDATE users SET disabled = ? WHERE id = ?")
            .bind(disabled as i64)
            .bind(user.id)
            .execute(&mut *tx)
            .await?;
        if disabled {
            revoke_sessions_in(&mut tx, user.id).await?;
        }
        let action = if disabled {
            "user.disable"
        } else {
            "user.enable"
        };
        let record = self
            .audit_in(
                &mut tx,
                actor,
                AuditEntry::new(action, format!("user/{name}")),
            )
            .await?;
        let user = user_in(&mut tx, name).await?;
        tx.commit().await?;
        self.audit_committed(&record)?;
        Ok(user)
    }

    /// Sets a user's password hash and ends their sessions.
    pub async fn set_password(&self, actor: &Actor, name: &str, password_hash: &str) -> Result<()> {
        let mut tx = self.write().await?;
        let user = user_in(&mut tx, name).await?;
        sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
            .bind(password_hash)
            .bind(user.id)
            .execute(&mut *tx)
            .await?;
        revoke_sessions_in(&mut tx, user.id).await?;
        let record = self
            .audit_in(
                &mut tx,
                actor,
                AuditEntry::new("user.password", format!("user/{name}")),
            )
            .await?;
        tx.commit().await?;
        self.audit_committed(&record)?;
        Ok(())
    }

    pub async fn create_team(&self, actor: &Actor, name: &str) -> Result<Team> {
        let mut tx = self.write().await?;
        if team_id_in(&mut tx, name).await.is_ok() {
            return Err(Error::AlreadyExists {
                what: "team",
                id: name.to_owned(),
            });
        }
        let created = now();
        sqlx::query("INSERT INTO teams (name, created_at, created_by) VALUES (?, ?, ?)")
            .bind(name)
            .bind(&created)
            .bind(&actor.name)
            .execute(&mut *tx)
            .await?;
        let record = self
            .audit_in(
                &mut tx,
                actor,
                AuditEntry::new("team.create", format!("team/{name}")),
            )
            .await?;
        tx.commit().await?;
        self.audit_committed(&record)?;
        Ok(Team {
            name: name.to_owned(),
            members: Vec::new(),
            created_at: created,
        })
    }

    /// Adds (`member = true`) or removes a user from a team. Adding a member twice or
    /// removing a non-member is a conflict, so a typo never passes silently.
    pub async fn set_team_member(
        &self,
        actor: &Actor,
        team: &str,
        user: &str,
        member: bool,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        let team_id = team_id_in(&mut tx, team).await?;
        let user_row = user_in(&mut tx, user).await?;
        let changed = if member {
            sqlx::query("INSERT OR IGNORE INTO team_members (team_id, user_id) VALUES (?, ?)")
        } else {
            sqlx::query("DELETE FROM team_members WHERE team_id = ? AND user_id = ?")
        }
        .bind(team_id)
        .bind(user_row.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(Error::Conflict(if member {
                format!("{user} is already a member of team {team}")
            } else {
                format!("{user} is not a member of team {team}")
            }));
        }
        let action = if member { "team.add" } else { "team.remove" };
        let entry = AuditEntry::new(action, format!("team/{team}"))
            .details(serde_json::json!({ "user": user }));
        let record = self.audit_in(&mut tx, actor, entry).await?;
        tx.commit().await?;
        self.audit_committed(&record)?;
        Ok(())
    }

    pub async fn list_teams(&self) -> Result<Vec<Team>> {
        let teams = sqlx::query("SELECT id, name, created_at FROM teams ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(teams.len());
        for t in &teams {
            let members = sqlx::query(
                "SELECT u.name FROM users u JOIN team_members m ON m.user_id = u.id \
                 WHERE m.team_id = ? ORDER BY u.name",
            )
            .bind(t.get::<i64, _>("id"))
            .fetch_all(&self.pool)
            .await?;
            out.push(Team {
                name: t.get("name"),
                members: members.iter().map(|r| r.get(0)).collect(),
                created_at: t.get("created_at"),
            });
        }
        Ok(out)
    }

    /// The teams a user belongs to (empty for an unknown name, such as a service token's).
    pub async fn user_teams(&self, user: &str) -> Result<Vec<String>> {
        let mut conn = self.pool.acquire().await?;
        user_teams_in(&mut conn, user).await
    }

    /// Grants (`granted = true`) or revokes a role.
    pub async fn set_grant(
        &self,
        actor: &Actor,
        subject: &Subject,
        grant: &Grant,
        granted: bool,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        let subject_id = subject_id_in(&mut tx, subject).await?;
        let changed = if granted {
            sqlx::query(
                "INSERT OR IGNORE INTO role_grants (subject_kind, subject_id, role, project, environment, created_at, created_by) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(subject.kind())
            .bind(subject_id)
            .bind(grant.role.as_str())
            .bind(&grant.project)
            .bind(&grant.environment)
            .bind(now())
            .bind(&actor.name)
            .execute(&mut *tx)
            .await?
        } else {
            sqlx::query(
                "DELETE FROM role_grants WHERE subject_kind = ? AND subject_id = ? AND role = ? \
                 AND project IS ? AND environment IS ?",
            )
            .bind(subject.kind())
            .bind(subject_id)
            .bind(grant.role.as_str())
            .bind(&grant.project)
            .bind(&grant.environment)
            .execute(&mut *tx)
            .await?
        }
        .rows_affected();
        if changed == 0 {
            return Err(Error::Conflict(if granted {
                format!("{subject} already holds {grant}")
            } else {
                format!("{subject} does not hold {grant}")
            }));
        }
        let action = if granted { "role.grant" } else { "role.revoke" };
        let entry = AuditEntry::new(action, subject.to_string())
            .details(serde_json::json!({ "grant": grant.to_string() }));
        let record = self.audit_in(&mut tx, actor, entry).await?;
        tx.commit().await?;
        self.audit_committed(&record)?;
        Ok(())
    }

    /// Every grant, by holder.
    pub async fn list_grants(&self) -> Result<Vec<(Subject, Grant)>> {
        let rows = sqlx::query(
            "SELECT g.*, COALESCE(u.name, t.name) AS subject_name FROM role_grants g \
             LEFT JOIN users u ON g.subject_kind = 'user' AND u.id = g.subject_id \
             LEFT JOIN teams t ON g.subject_kind = 'team' AND t.id = g.subject_id \
             ORDER BY g.subject_kind DESC, subject_name, g.role, g.project, g.environment",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let name: String = r.get("subject_name");
                let subject = match r.get::<String, _>("subject_kind").as_str() {
                    "team" => Subject::Team(name),
                    _ => Subject::User(name),
                };
                Ok((subject, grant_row(r)?))
            })
            .collect()
    }

    /// A user's grants: their own and those of every team they belong to.
    pub async fn user_grants(&self, user_id: i64) -> Result<Vec<Grant>> {
        let rows = sqlx::query(
            "SELECT role, project, environment FROM role_grants WHERE subject_kind = 'user' AND subject_id = ? \
             UNION SELECT g.role, g.project, g.environment FROM role_grants g \
             JOIN team_members m ON g.subject_kind = 'team' AND g.subject_id = m.team_id \
             WHERE m.user_id = ?",
        )
        .bind(user_id)
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant_row).collect()
    }

    /// Creates a personal or service token with its scopes and expiry, audited.
    pub async fn create_scoped_token(&self, actor: &Actor, new: &NewTokenRow<'_>) -> Result<Token> {
        let mut tx = self.write().await?;
        if sqlx::query("SELECT 1 FROM tokens WHERE name = ? AND revoked_at IS NULL")
            .bind(new.name)
            .fetch_optional(&mut *tx)
            .await?
            .is_some()
        {
            return Err(Error::AlreadyExists {
                what: "token",
                id: new.name.to_owned(),
            });
        }
        let user_id = match new.user {
            Some(user) => Some(user_in(&mut tx, user).await?.id),
            None => {
                // An admin token may already do everything (the bootstrap `admin` token
                // shares the first admin user's name by design).
                if !new.admin && user_in(&mut tx, new.name).await.is_ok() {
                    return Err(Error::Conflict(format!(
                        "`{}` is a user's name; a service token acts under its own name, so it needs another",
                        new.name
                    )));
                }
                None
            }
        };
        let row = sqlx::query(
            "INSERT INTO tokens (name, hash, hint, admin, created_at, created_by, user_id, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(new.name)
        .bind(new.hash)
        .bind(new.hint)
        .bind(new.admin as i64)
        .bind(now())
        .bind(&actor.name)
        .bind(user_id)
        .bind(new.expires_at)
        .fetch_one(&mut *tx)
        .await?;
        let token = token_row(&row);
        for scope in new.scopes {
            sqlx::query(
                "INSERT INTO token_scopes (token_id, role, project, environment) VALUES (?, ?, ?, ?)",
            )
            .bind(token.id)
            .bind(scope.role.as_str())
            .bind(&scope.project)
            .bind(&scope.environment)
            .execute(&mut *tx)
            .await?;
        }
        let scopes: Vec<String> = new.scopes.iter().map(Grant::to_string).collect();
        let entry = AuditEntry::new("token.create", format!("token/{}", new.name)).details(
            serde_json::json!({
                "admin": new.admin, "user": new.user, "scopes": scopes, "expires_at": new.expires_at,
            }),
        );
        let record = self.audit_in(&mut tx, actor, entry).await?;
        tx.commit().await?;
        self.audit_committed(&record)?;
        Ok(token)
    }

    /// A token's scopes (empty: none recorded).
    pub async fn token_scopes(&self, token_id: i64) -> Result<Vec<Grant>> {
        let rows = sqlx::query(
            "SELECT role, project, environment FROM token_scopes WHERE token_id = ? ORDER BY rowid",
        )
        .bind(token_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant_row).collect()
    }

    /// Starts a session for a user who just logged in, auditing the login in the same
    /// transaction. Failed logins for the account are forgotten.
    pub async fn create_session(
        &self,
        actor: &Actor,
        user: &User,
        hash: &str,
        absolute: chrono::Duration,
    ) -> Result<Session> {
        let mut tx = self.write().await?;
        let at = chrono::Utc::now();
        let created = rfc3339(at);
        let expires = rfc3339(at + absolute);
        let row = sqlx::query(
            "INSERT INTO sessions (hash, user_id, created_at, last_seen_at, expires_at, source) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(hash)
        .bind(user.id)
        .bind(&created)
        .bind(&created)
        .bind(&expires)
        .bind(&actor.source)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM login_failures WHERE username = ?")
            .bind(&user.name)
            .execute(&mut *tx)
            .await?;
        let record = self
            .audit_in(
                &mut tx,
                actor,
                AuditEntry::new("login", format!("user/{}", user.name)),
            )
            .await?;
        tx.commit().await?;
        self.audit_committed(&record)?;
        Ok(Session {
            id: row.get(0),
            user: user.clone(),
            created_at: created,
            expires_at: expires,
        })
    }

    /// The live session with this cookie hash: not revoked, before its absolute expiry,
    /// used within `idle`, and of an enabled user. Marks it used.
    pub async fn session_by_hash(
        &self,
        hash: &str,
        idle: chrono::Duration,
    ) -> Result<Option<Session>> {
        let at = chrono::Utc::now();
        let row = sqlx::query(
            "SELECT * FROM sessions WHERE hash = ? AND revoked_at IS NULL AND expires_at > ? AND last_seen_at > ?",
        )
        .bind(hash)
        .bind(rfc3339(at))
        .bind(rfc3339(at - idle))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let user = self.user_by_id(row.get("user_id")).await?;
        if user.disabled {
            return Ok(None);
        }
        let id: i64 = row.get("id");
        // At most one write per 30 seconds per session, so reads stay (mostly) reads; the
        // idle expiry is coarse by that much.
        sqlx::query("UPDATE sessions SET last_seen_at = ? WHERE id = ? AND last_seen_at < ?")
            .bind(rfc3339(at))
            .bind(id)
            .bind(rfc3339(at - chrono::Duration::seconds(30)))
            .execute(&self.pool)
            .await?;
        Ok(Some(Session {
            id,
            user,
            created_at: row.get("created_at"),
            expires_at: row.get("expires_at"),
        }))
    }

    /// Ends a session (logout), audited.
    pub async fn revoke_session(&self, actor: &Actor, id: i64) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query("UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(now())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let record = self
            .audit_in(
                &mut tx,
                actor,
                AuditEntry::new("logout", format!("user/{}", actor.name)),
            )
            .await?;
        tx.commit().await?;
        self.audit_committed(&record)?;
        Ok(())
    }

    /// Failed logins since `since` for this account and from this source address.
    pub async fn login_failures(
        &self,
        username: &str,
        source: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<(i64, i64)> {
        let since = rfc3339(since);
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM login_failures WHERE username = ? AND at > ?), \
                    (SELECT COUNT(*) FROM login_failures WHERE source = ? AND at > ?)",
        )
        .bind(username)
        .bind(&since)
        .bind(source)
        .bind(&since)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.get(0), row.get(1)))
    }

    /// Records a refused login (`outcome`: `failed`, `throttled`, `denied`) in the audit
    /// chain, and counts it towards throttling unless it was itself throttled.
    pub async fn record_login_refusal(
        &self,
        actor: &Actor,
        outcome: &str,
        reason: &str,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        // Throttling looks back minutes, not days: older failures are only clutter.
        sqlx::query("DELETE FROM login_failures WHERE at < ?")
            .bind(rfc3339(chrono::Utc::now() - chrono::Duration::days(1)))
            .execute(&mut *tx)
            .await?;
        if outcome != "throttled" {
            sqlx::query("INSERT INTO login_failures (username, source, at) VALUES (?, ?, ?)")
                .bind(&actor.name)
                .bind(&actor.source)
                .bind(now())
                .execute(&mut *tx)
                .await?;
        }
        let entry = AuditEntry::new("login", format!("user/{}", actor.name))
            .outcome(outcome)
            .details(serde_json::json!({ "reason": reason }));
        let record = self.audit_in(&mut tx, actor, entry).await?;
        tx.commit().await?;
        self.audit_committed(&record)?;
        Ok(())
    }
}

async fn service_token_named(conn: &mut SqliteConnection, name: &str) -> Result<bool> {
    Ok(sqlx::query(
        "SELECT 1 FROM tokens WHERE name = ? AND revoked_at IS NULL AND user_id IS NULL AND run_id IS NULL AND admin = 0",
    )
    .bind(name)
    .fetch_optional(conn)
    .await?
    .is_some())
}

async fn revoke_sessions_in(conn: &mut SqliteConnection, user_id: i64) -> Result<()> {
    sqlx::query("UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL")
        .bind(now())
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}
