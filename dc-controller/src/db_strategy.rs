//! The subcloud patch strategy, its steps and the `sw-update-options` in the database. One
//! strategy at a time (row id 1). State changes are single conditional statements
//! (`… WHERE state IN (…)`), so the API and the runner never overwrite each other's
//! decision, and a crash leaves the last committed state to resume from.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::{Db, DbError, is_duplicate, now};
use crate::model::ApplyType;
use crate::sw_update::{
    AlarmRestriction, InstanceAction, StepState, StepStatus, StrategySpec, StrategyState,
    StrategyStep, SwUpdateStrategy, UpdateOptions,
};

const STRATEGY_COLUMNS: &str = "subcloud_apply_type, max_parallel_subclouds, stop_on_failure, \
    max_failed_subclouds, canary, upload_only, cloud_name, subcloud_group, state, canary_done, \
    created_at, updated_at";

const STEP_COLUMNS: &str = "st.subcloud_id, s.name, st.stage, st.state, st.details, \
    st.started_at, st.finished_at, st.created_at, st.updated_at";

const OPTIONS_COLUMNS: &str = "cloud, storage_apply_type, worker_apply_type, max_parallel_workers, \
    alarm_restriction_type, default_instance_action, created_at, updated_at";

/// The strategy's only row.
const STRATEGY_ID: i64 = 1;

/// The `cloud` key of the default options.
const DEFAULT_CLOUD: &str = "";

fn strategy(row: &AnyRow) -> Result<SwUpdateStrategy, DbError> {
    let apply: Option<String> = row.try_get("subcloud_apply_type")?;
    Ok(SwUpdateStrategy {
        spec: StrategySpec {
            subcloud_apply_type: apply.map(|a| a.parse()).transpose()?,
            max_parallel_subclouds: row.try_get("max_parallel_subclouds")?,
            stop_on_failure: row.try_get::<i64, _>("stop_on_failure")? != 0,
            max_failed_subclouds: row.try_get("max_failed_subclouds")?,
            canary: row.try_get("canary")?,
            upload_only: row.try_get::<i64, _>("upload_only")? != 0,
            cloud_name: row.try_get("cloud_name")?,
            group: row.try_get("subcloud_group")?,
        },
        state: row.try_get::<String, _>("state")?.parse()?,
        canary_done: row.try_get::<i64, _>("canary_done")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn step(row: &AnyRow) -> Result<StrategyStep, DbError> {
    Ok(StrategyStep {
        subcloud_id: row.try_get("subcloud_id")?,
        cloud: row.try_get("name")?,
        stage: row.try_get("stage")?,
        state: row.try_get::<String, _>("state")?.parse()?,
        details: row.try_get("details")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn options(row: &AnyRow) -> Result<UpdateOptions, DbError> {
    let cloud: String = row.try_get("cloud")?;
    Ok(UpdateOptions {
        cloud: (cloud != DEFAULT_CLOUD).then_some(cloud),
        storage_apply_type: row.try_get::<String, _>("storage_apply_type")?.parse()?,
        worker_apply_type: row.try_get::<String, _>("worker_apply_type")?.parse()?,
        max_parallel_workers: row.try_get("max_parallel_workers")?,
        alarm_restriction_type: row
            .try_get::<String, _>("alarm_restriction_type")?
            .parse()?,
        default_instance_action: row
            .try_get::<String, _>("default_instance_action")?
            .parse()?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

/// One change to a step, for [`Db::write_steps`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepWrite {
    /// Start the step if it has not started.
    Start(i64),
    /// Move it to a state with details.
    Set(i64, StepState, String),
    /// Record the subcloud's sync status, as an audit would.
    Audit(i64, crate::db::AuditResult),
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

async fn start(tx: &mut Tx<'_>, subcloud_id: i64) -> Result<bool, DbError> {
    let at = now();
    let done = sqlx::query(
        "UPDATE strategy_steps SET state = $1, details = '', updated_at = $2, started_at = $2 \
         WHERE subcloud_id = $3 AND state = $4",
    )
    .bind(StepState::UpdatingPatches.as_str())
    .bind(at)
    .bind(subcloud_id)
    .bind(StepState::Initial.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

async fn write_step(
    tx: &mut Tx<'_>,
    subcloud_id: i64,
    state: StepState,
    details: &str,
) -> Result<(), DbError> {
    let at = now();
    sqlx::query(
        "UPDATE strategy_steps SET state = $1, details = $2, updated_at = $3, \
         started_at = CASE WHEN $4 = 1 THEN COALESCE(started_at, $3) ELSE started_at END, \
         finished_at = CASE WHEN $5 = 1 THEN $3 ELSE NULL END \
         WHERE subcloud_id = $6",
    )
    .bind(state.as_str())
    .bind(details)
    .bind(at)
    .bind(flag(state != StepState::Initial))
    .bind(flag(state.is_terminal()))
    .bind(subcloud_id)
    .execute(&mut **tx)
    .await?;
    if state == StepState::Complete {
        // Kept for dry runs' predicted durations (a repeat after a crash adds nothing).
        sqlx::query(
            "INSERT INTO step_durations (finished_at, subcloud_id, seconds) \
             SELECT finished_at, subcloud_id, finished_at - started_at FROM strategy_steps \
             WHERE subcloud_id = $1 AND started_at IS NOT NULL ON CONFLICT DO NOTHING",
        )
        .bind(subcloud_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Changes to a set of options (`sw-update-options update`); what is not given is kept
/// (or, for a subcloud without its own yet, taken from the default).
#[derive(Clone, Debug, Default)]
pub struct OptionsUpdate {
    /// Storage hosts one at a time or in parallel.
    pub storage_apply_type: Option<ApplyType>,
    /// Workers one at a time or in parallel.
    pub worker_apply_type: Option<ApplyType>,
    /// At most this many workers at once.
    pub max_parallel_workers: Option<i64>,
    /// Alarms tolerated.
    pub alarm_restriction_type: Option<AlarmRestriction>,
    /// Instances on a locked worker.
    pub default_instance_action: Option<InstanceAction>,
}

impl Db {
    /// The strategy, if there is one.
    pub async fn strategy(&self) -> Result<Option<SwUpdateStrategy>, DbError> {
        let row = sqlx::query(&format!(
            "SELECT {STRATEGY_COLUMNS} FROM sw_update_strategy WHERE id = $1"
        ))
        .bind(STRATEGY_ID)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(strategy).transpose()
    }

    /// Stores a new strategy and its steps ((subcloud id, stage) pairs), in one
    /// transaction; refused when one exists.
    pub async fn create_strategy(
        &self,
        spec: &StrategySpec,
        stages: &[(i64, i64)],
    ) -> Result<SwUpdateStrategy, DbError> {
        let at = now();
        let mut tx = self.pool.begin().await?;
        let made = sqlx::query(&format!(
            "INSERT INTO sw_update_strategy (id, {STRATEGY_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(STRATEGY_ID)
        .bind(spec.subcloud_apply_type.map(ApplyType::as_str))
        .bind(spec.max_parallel_subclouds)
        .bind(flag(spec.stop_on_failure))
        .bind(spec.max_failed_subclouds)
        .bind(spec.canary)
        .bind(flag(spec.upload_only))
        .bind(spec.cloud_name.as_deref())
        .bind(spec.group.as_deref())
        .bind(StrategyState::Initial.as_str())
        .bind(0_i64)
        .bind(at)
        .bind(at)
        .execute(&mut *tx)
        .await;
        if let Err(e) = made {
            return Err(if is_duplicate(&e) {
                DbError::Refused("Strategy of type: patch already exists".into())
            } else {
                e.into()
            });
        }
        for (subcloud_id, stage) in stages {
            sqlx::query(
                "INSERT INTO strategy_steps (subcloud_id, stage, state, details, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(subcloud_id)
            .bind(stage)
            .bind(StepState::Initial.as_str())
            .bind("")
            .bind(at)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.strategy()
            .await?
            .ok_or_else(|| DbError::NotFound("the strategy vanished as it was made".into()))
    }

    /// Moves the strategy to `to` if it is in one of `from` (and sets `canary_done` when
    /// given); false when it was not (someone else moved it first).
    pub async fn move_strategy(
        &self,
        from: &[StrategyState],
        to: StrategyState,
        canary_done: Option<bool>,
    ) -> Result<bool, DbError> {
        let states: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let done = sqlx::query(&format!(
            "UPDATE sw_update_strategy SET state = $1, updated_at = $2, \
             canary_done = COALESCE($3, canary_done) WHERE id = $4 AND state IN ({})",
            states.join(", ")
        ))
        .bind(to.as_str())
        .bind(now())
        .bind(canary_done.map(flag))
        .bind(STRATEGY_ID)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes the strategy and its steps, unless it is applying or aborting.
    pub async fn delete_strategy(&self) -> Result<SwUpdateStrategy, DbError> {
        let Some(mut current) = self.strategy().await? else {
            return Err(DbError::NotFound(
                "Strategy of type 'patch' not found".into(),
            ));
        };
        let mut tx = self.pool.begin().await?;
        let gone =
            sqlx::query("DELETE FROM sw_update_strategy WHERE id = $1 AND state NOT IN ($2, $3)")
                .bind(STRATEGY_ID)
                .bind(StrategyState::Applying.as_str())
                .bind(StrategyState::AbortRequested.as_str())
                .execute(&mut *tx)
                .await?;
        if gone.rows_affected() != 1 {
            return Err(DbError::Refused(format!(
                "Strategy in state {} cannot be deleted: abort it and wait until it is aborted",
                self.strategy().await?.map_or(current.state, |s| s.state)
            )));
        }
        sqlx::query("DELETE FROM strategy_steps")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        current.state = StrategyState::Deleted;
        Ok(current)
    }

    /// Every step, by stage then subcloud.
    pub async fn steps(&self) -> Result<Vec<StrategyStep>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {STEP_COLUMNS} FROM strategy_steps st JOIN subclouds s ON s.id = st.subcloud_id \
             ORDER BY st.stage, st.subcloud_id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(step).collect()
    }

    /// Where every step is (what the runner looks at each tick: no join, three columns).
    pub async fn step_statuses(&self) -> Result<Vec<StepStatus>, DbError> {
        let rows = sqlx::query("SELECT subcloud_id, stage, state FROM strategy_steps")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StepStatus {
                    subcloud_id: row.try_get("subcloud_id")?,
                    stage: row.try_get("stage")?,
                    state: row.try_get::<String, _>("state")?.parse()?,
                })
            })
            .collect()
    }

    /// Every step as the API lists them (`[{"cloud": …, "stage": …}, …]`), made by the
    /// database in one value: thousands of rows would otherwise each cross the driver.
    pub async fn steps_json(&self) -> Result<String, DbError> {
        let fields = "'cloud', s.name, 'stage', st.stage, 'state', st.state, \
            'details', st.details, 'started-at', st.started_at, 'finished-at', st.finished_at, \
            'created-at', st.created_at, 'updated-at', st.updated_at";
        let order = "ORDER BY st.stage, st.subcloud_id";
        if self.backend() == crate::db::Backend::Postgres {
            // PostgreSQL hands rows over fast; its json_agg text was slower (measured).
            let steps = self.steps().await?;
            let list: Vec<serde_json::Value> =
                steps.iter().map(crate::sw_update::step_json).collect();
            return serde_json::to_string(&list)
                .map_err(|e| DbError::Write(format!("encoding the steps: {e}")));
        }
        let query = match self.backend() {
            crate::db::Backend::Sqlite => format!(
                "SELECT json_group_array(json_object({fields}) {order}) AS steps \
                 FROM strategy_steps st JOIN subclouds s ON s.id = st.subcloud_id"
            ),
            crate::db::Backend::Postgres => format!(
                "SELECT COALESCE(json_agg(json_build_object({fields}) {order}), '[]'::json)::text AS steps \
                 FROM strategy_steps st JOIN subclouds s ON s.id = st.subcloud_id"
            ),
        };
        let row = sqlx::query(&query).fetch_one(&self.pool).await?;
        Ok(row.try_get("steps")?)
    }

    /// One subcloud's step (by subcloud name).
    pub async fn step(&self, cloud: &str) -> Result<StrategyStep, DbError> {
        let row = sqlx::query(&format!(
            "SELECT {STEP_COLUMNS} FROM strategy_steps st JOIN subclouds s ON s.id = st.subcloud_id \
             WHERE s.name = $1"
        ))
        .bind(cloud)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => step(&row),
            None => Err(DbError::NotFound(format!(
                "Strategy step not found for subcloud {cloud}"
            ))),
        }
    }

    /// Applies `writes` in one transaction (one commit for all: a hundred subclouds' steps
    /// moving at once cost one fsync, not a hundred). Each answer says whether that write
    /// took (a start is refused when the step has started or was aborted).
    pub async fn write_steps(&self, writes: &[StepWrite]) -> Result<Vec<bool>, DbError> {
        let mut tx = self.pool.begin().await?;
        let mut taken = Vec::with_capacity(writes.len());
        for write in writes {
            taken.push(match write {
                StepWrite::Start(id) => start(&mut tx, *id).await?,
                StepWrite::Set(id, state, details) => {
                    write_step(&mut tx, *id, *state, details).await?;
                    true
                }
                StepWrite::Audit(id, result) => {
                    crate::db::record_audit_in(&mut *tx, *id, result).await?;
                    true
                }
            });
        }
        tx.commit().await?;
        Ok(taken)
    }

    /// The median time a subcloud's step took, over the last 1,000 completed here (none
    /// before the first).
    pub async fn typical_step_seconds(&self) -> Result<Option<i64>, DbError> {
        let rows =
            sqlx::query("SELECT seconds FROM step_durations ORDER BY finished_at DESC LIMIT 1000")
                .fetch_all(&self.pool)
                .await?;
        let mut secs: Vec<i64> = rows
            .iter()
            .map(|r| r.try_get::<i64, _>("seconds"))
            .collect::<Result<_, _>>()?;
        secs.sort_unstable();
        Ok(secs.get(secs.len() / 2).copied())
    }

    /// Whether a subcloud has a step in the strategy.
    pub async fn in_strategy(&self, subcloud_id: i64) -> Result<bool, DbError> {
        Ok(
            sqlx::query("SELECT subcloud_id FROM strategy_steps WHERE subcloud_id = $1")
                .bind(subcloud_id)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    /// Sets the steps of `ids` that have not started to aborted.
    pub async fn abort_steps(&self, ids: &[i64], why: &str) -> Result<(), DbError> {
        for id in ids {
            sqlx::query(
                "UPDATE strategy_steps SET state = $1, details = $2, updated_at = $3, finished_at = $3 \
                 WHERE subcloud_id = $4 AND state = $5",
            )
            .bind(StepState::Aborted.as_str())
            .bind(why)
            .bind(now())
            .bind(id)
            .bind(StepState::Initial.as_str())
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// Every set of options: the default first, then each subcloud's own.
    pub async fn options_list(&self) -> Result<Vec<UpdateOptions>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {OPTIONS_COLUMNS} FROM sw_update_options ORDER BY cloud"
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut list: Vec<UpdateOptions> = rows.iter().map(options).collect::<Result<_, _>>()?;
        if list.first().is_none_or(|o| o.cloud.is_some()) {
            list.insert(0, UpdateOptions::defaults(0));
        }
        Ok(list)
    }

    /// The options `cloud` (none: the default) has: its own, else the default's.
    pub async fn options_for(&self, cloud: Option<&str>) -> Result<UpdateOptions, DbError> {
        for key in [cloud, Some(DEFAULT_CLOUD)].into_iter().flatten() {
            let row = sqlx::query(&format!(
                "SELECT {OPTIONS_COLUMNS} FROM sw_update_options WHERE cloud = $1"
            ))
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(row) = row {
                return options(&row);
            }
        }
        Ok(UpdateOptions::defaults(0))
    }

    /// A subcloud's own options, if it has some.
    pub async fn own_options(&self, cloud: &str) -> Result<Option<UpdateOptions>, DbError> {
        let row = sqlx::query(&format!(
            "SELECT {OPTIONS_COLUMNS} FROM sw_update_options WHERE cloud = $1"
        ))
        .bind(cloud)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(options).transpose()
    }

    /// Updates (making when missing) the options of `cloud` (none: the default).
    pub async fn update_options(
        &self,
        cloud: Option<&str>,
        update: OptionsUpdate,
    ) -> Result<UpdateOptions, DbError> {
        if let Some(n) = update.max_parallel_workers {
            crate::sw_update::check_max_parallel_workers(n).map_err(DbError::Refused)?;
        }
        let base = self.options_for(cloud).await?;
        let at = now();
        let key = cloud.unwrap_or(DEFAULT_CLOUD);
        let created = if base.cloud.as_deref() == cloud && base.created_at != 0 {
            base.created_at
        } else {
            at
        };
        sqlx::query(&format!(
            "INSERT INTO sw_update_options ({OPTIONS_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (cloud) DO UPDATE SET storage_apply_type = $2, worker_apply_type = $3, \
             max_parallel_workers = $4, alarm_restriction_type = $5, default_instance_action = $6, \
             updated_at = $8"
        ))
        .bind(key)
        .bind(
            update
                .storage_apply_type
                .unwrap_or(base.storage_apply_type)
                .as_str(),
        )
        .bind(
            update
                .worker_apply_type
                .unwrap_or(base.worker_apply_type)
                .as_str(),
        )
        .bind(update.max_parallel_workers.unwrap_or(base.max_parallel_workers))
        .bind(
            update
                .alarm_restriction_type
                .unwrap_or(base.alarm_restriction_type)
                .as_str(),
        )
        .bind(
            update
                .default_instance_action
                .unwrap_or(base.default_instance_action)
                .as_str(),
        )
        .bind(created)
        .bind(at)
        .execute(&self.pool)
        .await?;
        self.options_for(cloud.or(Some(DEFAULT_CLOUD))).await
    }

    /// Deletes a subcloud's own options (it then has the default's); the default cannot be
    /// deleted.
    pub async fn delete_options(&self, cloud: &str) -> Result<(), DbError> {
        let gone = sqlx::query("DELETE FROM sw_update_options WHERE cloud = $1")
            .bind(cloud)
            .execute(&self.pool)
            .await?;
        if gone.rows_affected() == 0 {
            return Err(DbError::NotFound(format!(
                "No options found for subcloud {cloud}"
            )));
        }
        Ok(())
    }
}
