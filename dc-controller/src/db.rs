//! The system controller's state in a database: SQLite by default (a file in the state
//! directory, so it runs anywhere), PostgreSQL when `database_url` names one. One query
//! layer serves both (`sqlx`'s `Any` driver, `$N` placeholders); only the table definitions
//! differ, in their id columns. Every change is one statement or one transaction, so a
//! crash at any instant leaves the last committed state.

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::model::{
    Access, ApplyType, Availability, BadValue, DEFAULT_GROUP, Group, Management, NewSubcloud,
    Subcloud, SyncStatus,
};

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database could not be reached or refused a statement.
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    /// A stored value is not one the model knows (a damaged or foreign database).
    #[error("database holds a bad value: {0}")]
    Corrupt(#[from] BadValue),
    /// The request is refused (the message says why and what to do).
    #[error("{0}")]
    Refused(String),
    /// No such subcloud or group.
    #[error("{0}")]
    NotFound(String),
    /// A batched write failed (the cause, as the batch's writer saw it).
    #[error("database: {0}")]
    Write(String),
}

/// Which database it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (a file).
    Sqlite,
    /// PostgreSQL (a server).
    Postgres,
}

/// The database.
#[derive(Clone, Debug)]
pub struct Db {
    pub(crate) pool: AnyPool,
    backend: Backend,
}

/// The tables, per backend (only the id columns differ).
fn schema(backend: Backend) -> Vec<String> {
    let id = match backend {
        Backend::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
        Backend::Postgres => "BIGSERIAL PRIMARY KEY",
    };
    let mut tables = vec![
        format!(
            "CREATE TABLE IF NOT EXISTS subcloud_groups (
                id {id},
                name TEXT NOT NULL UNIQUE,
                description TEXT NOT NULL,
                update_apply_type TEXT NOT NULL,
                max_parallel_subclouds BIGINT NOT NULL
            )"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS subclouds (
                id {id},
                name TEXT NOT NULL UNIQUE,
                url TEXT NOT NULL,
                token TEXT NOT NULL,
                ca_pem TEXT,
                vim_url TEXT,
                description TEXT NOT NULL,
                location TEXT NOT NULL,
                group_id BIGINT NOT NULL REFERENCES subcloud_groups(id),
                management TEXT NOT NULL,
                availability TEXT NOT NULL,
                sync_status TEXT NOT NULL,
                sync_detail TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                audited_at BIGINT
            )"
        ),
    ];
    tables.extend(STRATEGY_SCHEMA.iter().map(|t| (*t).to_owned()));
    tables
}

/// The subcloud strategy's tables ([`crate::db_strategy`]; the same on SQLite and
/// PostgreSQL: no generated ids).
const STRATEGY_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS sw_update_strategy (
        id BIGINT PRIMARY KEY,
        subcloud_apply_type TEXT,
        max_parallel_subclouds BIGINT,
        stop_on_failure BIGINT NOT NULL,
        max_failed_subclouds BIGINT,
        canary BIGINT NOT NULL,
        upload_only BIGINT NOT NULL,
        cloud_name TEXT,
        subcloud_group TEXT,
        state TEXT NOT NULL,
        canary_done BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS strategy_steps (
        subcloud_id BIGINT PRIMARY KEY REFERENCES subclouds(id),
        stage BIGINT NOT NULL,
        state TEXT NOT NULL,
        details TEXT NOT NULL,
        started_at BIGINT,
        finished_at BIGINT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS strategy_steps_by_stage ON strategy_steps (stage, subcloud_id)",
    "CREATE TABLE IF NOT EXISTS step_durations (
        finished_at BIGINT NOT NULL,
        subcloud_id BIGINT NOT NULL,
        seconds BIGINT NOT NULL,
        PRIMARY KEY (finished_at, subcloud_id)
    )",
    "CREATE TABLE IF NOT EXISTS sw_update_options (
        cloud TEXT PRIMARY KEY,
        storage_apply_type TEXT NOT NULL,
        worker_apply_type TEXT NOT NULL,
        max_parallel_workers BIGINT NOT NULL,
        alarm_restriction_type TEXT NOT NULL,
        default_instance_action TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
];

const SUBCLOUD_COLUMNS: &str = "id, name, url, vim_url, description, location, group_id, management, \
     availability, sync_status, sync_detail, created_at, updated_at, audited_at";

const GROUP_COLUMNS: &str = "id, name, description, update_apply_type, max_parallel_subclouds";

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn subcloud(row: &AnyRow) -> Result<Subcloud, DbError> {
    Ok(Subcloud {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        url: row.try_get("url")?,
        vim_url: row.try_get("vim_url")?,
        description: row.try_get("description")?,
        location: row.try_get("location")?,
        group_id: row.try_get("group_id")?,
        management: row.try_get::<String, _>("management")?.parse()?,
        availability: row.try_get::<String, _>("availability")?.parse()?,
        sync_status: row.try_get::<String, _>("sync_status")?.parse()?,
        sync_detail: row.try_get("sync_detail")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        audited_at: row.try_get("audited_at")?,
    })
}

fn group(row: &AnyRow) -> Result<Group, DbError> {
    Ok(Group {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        update_apply_type: row.try_get::<String, _>("update_apply_type")?.parse()?,
        max_parallel_subclouds: row.try_get("max_parallel_subclouds")?,
    })
}

/// A unique-constraint violation: the name is taken.
pub(crate) fn is_duplicate(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

/// What an audit found for one subcloud.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditResult {
    /// Whether it answered.
    pub availability: Availability,
    /// Its sync status.
    pub sync_status: SyncStatus,
    /// How it differs, or why unknown.
    pub sync_detail: String,
}

/// Changes to a group (`subcloud-group update`).
#[derive(Clone, Debug, Default)]
pub struct GroupUpdate {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New apply type.
    pub update_apply_type: Option<ApplyType>,
    /// New limit.
    pub max_parallel_subclouds: Option<i64>,
}

impl Db {
    /// Opens (creating when missing) the database at `url`: `sqlite://PATH` or
    /// `postgres://…`; the tables and the default group are made if missing.
    pub async fn open(url: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(DbError::Refused(format!(
                "database_url must start with sqlite:// or postgres://, not {:?}",
                url.split(':').next().unwrap_or_default()
            )));
        };
        let sqlite = backend == Backend::Sqlite;
        let pool = AnyPoolOptions::new()
            // SQLite allows one writer; a pool of one avoids "database is locked".
            .max_connections(if sqlite { 1 } else { 8 })
            // A write-ahead log commits with one fsync (a rollback journal needs several),
            // which a hundred subclouds' steps changing at once need; FULL keeps every
            // commit durable, not just up to the last checkpoint.
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = FULL",
                            "PRAGMA foreign_keys = ON",
                        ] {
                            sqlx::Executor::execute(&mut *conn, pragma).await?;
                        }
                    }
                    Ok(())
                })
            })
            .acquire_timeout(std::time::Duration::from_secs(30))
            .connect(url)
            .await?;
        let db = Db { pool, backend };
        for statement in schema(backend) {
            sqlx::query(&statement).execute(&db.pool).await?;
        }
        let default_exists = sqlx::query("SELECT id FROM subcloud_groups WHERE name = $1")
            .bind(DEFAULT_GROUP)
            .fetch_optional(&db.pool)
            .await?
            .is_some();
        if !default_exists {
            // The original's default group: parallel, two at once.
            let made = sqlx::query(
                "INSERT INTO subcloud_groups (name, description, update_apply_type, max_parallel_subclouds) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(DEFAULT_GROUP)
            .bind("Default Subcloud Group")
            .bind(ApplyType::Parallel.as_str())
            .bind(2_i64)
            .execute(&db.pool)
            .await;
            // Two starting at once: the other made it.
            if let Err(e) = made
                && !is_duplicate(&e)
            {
                return Err(e.into());
            }
        }
        Ok(db)
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Every group, by id.
    pub async fn groups(&self) -> Result<Vec<Group>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {GROUP_COLUMNS} FROM subcloud_groups ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(group).collect()
    }

    /// One group, by name or id.
    pub async fn group(&self, name_or_id: &str) -> Result<Group, DbError> {
        match self
            .row_by_name_or_id("subcloud_groups", GROUP_COLUMNS, name_or_id)
            .await?
        {
            Some(row) => group(&row),
            None => Err(DbError::NotFound(format!(
                "Subcloud Group not found: {name_or_id}"
            ))),
        }
    }

    /// The row of `table` whose id (a number) or name (anything else) is `key`.
    async fn row_by_name_or_id(
        &self,
        table: &str,
        columns: &str,
        key: &str,
    ) -> Result<Option<AnyRow>, DbError> {
        let (column, id) = match key.parse::<i64>() {
            Ok(id) => ("id", Some(id)),
            Err(_) => ("name", None),
        };
        let query = format!("SELECT {columns} FROM {table} WHERE {column} = $1");
        let query = sqlx::query(&query);
        let query = match id {
            Some(id) => query.bind(id),
            None => query.bind(key),
        };
        Ok(query.fetch_optional(&self.pool).await?)
    }

    /// Adds a group.
    pub async fn add_group(
        &self,
        name: &str,
        description: &str,
        apply: ApplyType,
        max_parallel: i64,
    ) -> Result<Group, DbError> {
        crate::model::validate_name("group", name).map_err(DbError::Refused)?;
        check_max_parallel(max_parallel)?;
        let made = sqlx::query(
            "INSERT INTO subcloud_groups (name, description, update_apply_type, max_parallel_subclouds) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(name)
        .bind(description)
        .bind(apply.as_str())
        .bind(max_parallel)
        .execute(&self.pool)
        .await;
        match made {
            Err(e) if is_duplicate(&e) => Err(DbError::Refused(format!(
                "A subcloud group with name {name} already exists"
            ))),
            Err(e) => Err(e.into()),
            Ok(_) => self.group(name).await,
        }
    }

    /// Changes a group.
    pub async fn update_group(
        &self,
        name_or_id: &str,
        update: GroupUpdate,
    ) -> Result<Group, DbError> {
        let old = self.group(name_or_id).await?;
        if let Some(name) = &update.name {
            crate::model::validate_name("group", name).map_err(DbError::Refused)?;
            if old.name == DEFAULT_GROUP && name != DEFAULT_GROUP {
                return Err(DbError::Refused(
                    "Default group name cannot be changed".into(),
                ));
            }
        }
        if let Some(n) = update.max_parallel_subclouds {
            check_max_parallel(n)?;
        }
        let changed = sqlx::query(
            "UPDATE subcloud_groups SET name = $1, description = $2, update_apply_type = $3, \
             max_parallel_subclouds = $4 WHERE id = $5",
        )
        .bind(update.name.as_deref().unwrap_or(&old.name))
        .bind(update.description.as_deref().unwrap_or(&old.description))
        .bind(
            update
                .update_apply_type
                .unwrap_or(old.update_apply_type)
                .as_str(),
        )
        .bind(
            update
                .max_parallel_subclouds
                .unwrap_or(old.max_parallel_subclouds),
        )
        .bind(old.id)
        .execute(&self.pool)
        .await;
        match changed {
            Err(e) if is_duplicate(&e) => Err(DbError::Refused(format!(
                "A subcloud group with name {} already exists",
                update.name.unwrap_or_default()
            ))),
            Err(e) => Err(e.into()),
            Ok(_) => self.group(&old.id.to_string()).await,
        }
    }

    /// Deletes a group; its subclouds move to the default group (in one transaction).
    pub async fn delete_group(&self, name_or_id: &str) -> Result<(), DbError> {
        let old = self.group(name_or_id).await?;
        if old.name == DEFAULT_GROUP {
            return Err(DbError::Refused(
                "Default Subcloud Group may not be deleted".into(),
            ));
        }
        let default = self.group(DEFAULT_GROUP).await?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE subclouds SET group_id = $1, updated_at = $2 WHERE group_id = $3")
            .bind(default.id)
            .bind(now())
            .bind(old.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM subcloud_groups WHERE id = $1")
            .bind(old.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The subclouds of a group.
    pub async fn group_subclouds(&self, name_or_id: &str) -> Result<Vec<Subcloud>, DbError> {
        let g = self.group(name_or_id).await?;
        Ok(self
            .subclouds()
            .await?
            .into_iter()
            .filter(|s| s.group_id == g.id)
            .collect())
    }

    /// Every subcloud, by id.
    pub async fn subclouds(&self) -> Result<Vec<Subcloud>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {SUBCLOUD_COLUMNS} FROM subclouds ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(subcloud).collect()
    }

    /// One subcloud, by name or id.
    pub async fn subcloud(&self, name_or_id: &str) -> Result<Subcloud, DbError> {
        match self
            .row_by_name_or_id("subclouds", SUBCLOUD_COLUMNS, name_or_id)
            .await?
        {
            Some(row) => subcloud(&row),
            None => Err(DbError::NotFound(format!(
                "Subcloud not found: {name_or_id}"
            ))),
        }
    }

    /// Every managed subcloud with how to reach it (one query: the audit then talks to
    /// the subclouds without holding a connection).
    pub async fn managed(&self) -> Result<Vec<(Subcloud, Access)>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {SUBCLOUD_COLUMNS}, token, ca_pem FROM subclouds WHERE management = $1 ORDER BY id"
        ))
        .bind(Management::Managed.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let s = subcloud(row)?;
                let access = Access {
                    url: s.url.clone(),
                    token: row.try_get("token")?,
                    ca_pem: row.try_get("ca_pem")?,
                    vim_url: s.vim_url.clone(),
                };
                Ok((s, access))
            })
            .collect()
    }

    /// How to reach a subcloud.
    pub async fn access(&self, id: i64) -> Result<Access, DbError> {
        let row = sqlx::query("SELECT url, token, ca_pem, vim_url FROM subclouds WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| DbError::NotFound(format!("Subcloud not found: {id}")))?;
        Ok(Access {
            url: row.try_get("url")?,
            token: row.try_get("token")?,
            ca_pem: row.try_get("ca_pem")?,
            vim_url: row.try_get("vim_url")?,
        })
    }

    /// Adds a subcloud (unmanaged, offline, sync unknown until managed and audited).
    pub async fn add_subcloud(&self, new: NewSubcloud) -> Result<Subcloud, DbError> {
        crate::model::validate_name("subcloud", &new.name).map_err(DbError::Refused)?;
        for url in std::iter::once(&new.access.url).chain(new.access.vim_url.as_ref()) {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(DbError::Refused(format!(
                    "the subcloud's URLs must be http:// or https://, not {url:?}"
                )));
            }
        }
        let group = self
            .group(new.group.as_deref().unwrap_or(DEFAULT_GROUP))
            .await?;
        let t = now();
        let made = sqlx::query(
            "INSERT INTO subclouds (name, url, token, ca_pem, description, location, group_id, \
             management, availability, sync_status, sync_detail, created_at, updated_at, vim_url) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&new.name)
        .bind(&new.access.url)
        .bind(&new.access.token)
        .bind(new.access.ca_pem.clone())
        .bind(&new.description)
        .bind(&new.location)
        .bind(group.id)
        .bind(Management::Unmanaged.as_str())
        .bind(Availability::Offline.as_str())
        .bind(SyncStatus::Unknown.as_str())
        .bind("not audited yet")
        .bind(t)
        .bind(t)
        .bind(new.access.vim_url.clone())
        .execute(&self.pool)
        .await;
        match made {
            Err(e) if is_duplicate(&e) => Err(DbError::Refused(format!(
                "Subcloud with name {} already exists",
                new.name
            ))),
            Err(e) => Err(e.into()),
            Ok(_) => self.subcloud(&new.name).await,
        }
    }

    /// Manages or unmanages a subcloud; unmanaging makes its sync status unknown.
    pub async fn set_management(
        &self,
        name_or_id: &str,
        management: Management,
    ) -> Result<Subcloud, DbError> {
        let old = self.subcloud(name_or_id).await?;
        if old.management == management {
            return Err(DbError::Refused(format!(
                "Subcloud {} already {}",
                old.name,
                management.as_str()
            )));
        }
        let (sync, detail) = match management {
            Management::Managed => (old.sync_status, old.sync_detail.as_str()),
            Management::Unmanaged => (SyncStatus::Unknown, "unmanaged"),
        };
        sqlx::query(
            "UPDATE subclouds SET management = $1, sync_status = $2, sync_detail = $3, updated_at = $4 \
             WHERE id = $5",
        )
        .bind(management.as_str())
        .bind(sync.as_str())
        .bind(detail)
        .bind(now())
        .bind(old.id)
        .execute(&self.pool)
        .await?;
        self.subcloud(&old.id.to_string()).await
    }

    /// Moves a subcloud to another group.
    pub async fn set_group(&self, name_or_id: &str, group: &str) -> Result<Subcloud, DbError> {
        let old = self.subcloud(name_or_id).await?;
        let group = self.group(group).await?;
        sqlx::query("UPDATE subclouds SET group_id = $1, updated_at = $2 WHERE id = $3")
            .bind(group.id)
            .bind(now())
            .bind(old.id)
            .execute(&self.pool)
            .await?;
        self.subcloud(&old.id.to_string()).await
    }

    /// Deletes a subcloud; a managed one must be unmanaged first (as in the original).
    pub async fn delete_subcloud(&self, name_or_id: &str) -> Result<(), DbError> {
        let old = self.subcloud(name_or_id).await?;
        if old.management == Management::Managed {
            return Err(DbError::Refused(format!(
                "Cannot delete a subcloud that is \"managed\" status: unmanage {} first",
                old.name
            )));
        }
        if self.in_strategy(old.id).await? {
            return Err(DbError::Refused(format!(
                "subcloud {} is in the patch strategy: delete the strategy first",
                old.name
            )));
        }
        sqlx::query("DELETE FROM subclouds WHERE id = $1")
            .bind(old.id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records an audit's result, unless the subcloud was unmanaged meanwhile.
    pub async fn record_audit(&self, id: i64, result: &AuditResult) -> Result<(), DbError> {
        record_audit_in(&self.pool, id, result).await
    }

    /// Closes the connections.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Records an audit's result through `executor` (the pool, or a transaction).
pub(crate) async fn record_audit_in<'e, E>(
    executor: E,
    id: i64,
    result: &AuditResult,
) -> Result<(), DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "UPDATE subclouds SET availability = $1, sync_status = $2, sync_detail = $3, \
         audited_at = $4 WHERE id = $5 AND management = $6",
    )
    .bind(result.availability.as_str())
    .bind(result.sync_status.as_str())
    .bind(result.sync_detail.clone())
    .bind(now())
    .bind(id)
    .bind(Management::Managed.as_str())
    .execute(executor)
    .await?;
    Ok(())
}

fn check_max_parallel(n: i64) -> Result<(), DbError> {
    if !(1..=5000).contains(&n) {
        return Err(DbError::Refused(format!(
            "max_parallel_subclouds must be 1 to 5000, not {n}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_subcloud(name: &str) -> NewSubcloud {
        NewSubcloud {
            name: name.into(),
            access: Access {
                url: "https://10.0.0.2:5491".into(),
                token: "secret".into(),
                ca_pem: None,
                vim_url: None,
            },
            group: None,
            description: String::new(),
            location: String::new(),
        }
    }

    async fn sqlite() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("dc.sqlite").display()
        );
        let db = Db::open(&url).await.unwrap();
        (dir, db)
    }

    #[tokio::test]
    async fn subclouds_and_groups_follow_the_original_rules_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("dc.sqlite").display()
        );
        rules(&url).await;
    }

    #[tokio::test]
    async fn subclouds_and_groups_follow_the_original_rules_on_postgresql() {
        let server = crate::test_postgres::Postgres::start();
        rules(&server.url()).await;
    }

    /// The rules, on the database at `url` (fresh), which is then reopened.
    async fn rules(url: &str) {
        let db = Db::open(url).await.unwrap();
        assert_eq!(db.groups().await.unwrap()[0].name, DEFAULT_GROUP);
        let east = db
            .add_group("east", "", ApplyType::Serial, 3)
            .await
            .unwrap();
        assert!(matches!(
            db.add_group("east", "", ApplyType::Serial, 3).await,
            Err(DbError::Refused(m)) if m == "A subcloud group with name east already exists"
        ));
        let mut new = new_subcloud("subcloud1");
        new.group = Some("east".into());
        let s1 = db.add_subcloud(new).await.unwrap();
        assert_eq!(
            (s1.management, s1.availability, s1.sync_status, s1.group_id),
            (
                Management::Unmanaged,
                Availability::Offline,
                SyncStatus::Unknown,
                east.id
            )
        );
        assert!(matches!(
            db.add_subcloud(new_subcloud("subcloud1")).await,
            Err(DbError::Refused(_))
        ));
        db.set_management("subcloud1", Management::Managed)
            .await
            .unwrap();
        db.record_audit(
            s1.id,
            &AuditResult {
                availability: Availability::Online,
                sync_status: SyncStatus::OutOfSync,
                sync_detail: "missing: P1".into(),
            },
        )
        .await
        .unwrap();
        let s1 = db.subcloud("subcloud1").await.unwrap();
        assert_eq!(s1.sync_status, SyncStatus::OutOfSync);
        assert!(s1.audited_at.is_some());
        assert!(matches!(
            db.delete_subcloud("subcloud1").await,
            Err(DbError::Refused(m)) if m.contains("unmanage subcloud1 first")
        ));
        // Unmanaged: the sync status is unknown, and an audit finishing late changes nothing.
        db.set_management("1", Management::Unmanaged).await.unwrap();
        db.record_audit(
            s1.id,
            &AuditResult {
                availability: Availability::Online,
                sync_status: SyncStatus::InSync,
                sync_detail: String::new(),
            },
        )
        .await
        .unwrap();
        assert_eq!(
            db.subcloud("subcloud1").await.unwrap().sync_status,
            SyncStatus::Unknown
        );
        // Deleting its group moves it to the default group.
        db.delete_group("east").await.unwrap();
        assert_eq!(db.subcloud("subcloud1").await.unwrap().group_id, 1);
        assert!(db.delete_group(DEFAULT_GROUP).await.is_err());
        db.delete_subcloud("subcloud1").await.unwrap();
        assert!(matches!(
            db.subcloud("subcloud1").await,
            Err(DbError::NotFound(_))
        ));
        // The state is in the file: a reopened database has it.
        let s2 = db.add_subcloud(new_subcloud("subcloud2")).await.unwrap();
        db.close().await;
        let again = Db::open(url).await.unwrap();
        assert_eq!(again.subclouds().await.unwrap(), std::slice::from_ref(&s2));
        assert_eq!(again.access(s2.id).await.unwrap().token, "secret");
        assert_eq!(again.groups().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn bad_input_is_refused_with_the_reason() {
        let (_dir, db) = sqlite().await;
        let mut bad = new_subcloud("../etc");
        assert!(matches!(
            db.add_subcloud(bad.clone()).await,
            Err(DbError::Refused(_))
        ));
        bad.name = "ok".into();
        bad.access.url = "ftp://x".into();
        assert!(matches!(
            db.add_subcloud(bad).await,
            Err(DbError::Refused(_))
        ));
        assert!(matches!(
            db.add_group("g", "", ApplyType::Parallel, 0).await,
            Err(DbError::Refused(_))
        ));
        assert!(matches!(
            Db::open("mysql://x").await,
            Err(DbError::Refused(m)) if m.contains("sqlite:// or postgres://")
        ));
    }
}
