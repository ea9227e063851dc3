//! Strategy operations: the one patch strategy's create (or dry run), apply and abort
//! actions, and delete. The rules are the orchestrator's; here they are saved, replicated
//! and handed to the audit task that advances the strategy.

use orchestrator::api::Action;
use orchestrator::{ActionRefused, DryRunError, Stage, Strategy, StrategyOptions, Timing};

use super::{Service, ServiceError, blocking};
use crate::orchestration::now_ms;

/// Why a strategy operation did not happen; the texts are the original's.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StrategyError {
    /// There is no strategy (or not that one).
    #[error("The resource could not be found.")]
    NotFound,
    /// Only one strategy exists at a time.
    #[error("strategy already exists of type:{0}")]
    Exists(String),
    /// The strategy is busy and cannot be deleted.
    #[error(transparent)]
    DeleteRefused(ActionRefused),
    /// The strategy refused an apply or abort.
    #[error(transparent)]
    ActionRefused(ActionRefused),
    /// The precheck found the cluster unfit (or only warnings, without `force`).
    #[error("{0}")]
    Precheck(String),
    /// Saving the strategy failed (and nothing changed).
    #[error("cannot save the strategy: {0}")]
    Save(std::io::Error),
}

/// A dry run's plan: the stages a strategy would have, and the durations that predict.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) stages: Vec<Stage>,
    pub(crate) timing: Timing,
}

impl Plan {
    /// At least and at most how long the apply would take, in seconds.
    pub(crate) fn predicted_duration(&self) -> (u64, u64) {
        orchestrator::api::predicted_duration(&self.stages, &self.timing)
    }
}

impl Service {
    /// The strategy, if one exists.
    pub(crate) fn strategy(&self) -> Option<Strategy> {
        self.orch.current()
    }

    fn new_strategy(&self, options: StrategyOptions) -> Strategy {
        let config = self.config();
        Strategy::new(
            options,
            config.strategy_timing.clone(),
            config.single_controller,
            config.ignore_alarms.clone(),
        )
    }

    /// What a strategy with these options would do now; nothing is stored.
    pub(crate) async fn plan_strategy(
        &self,
        options: StrategyOptions,
    ) -> Result<Result<Plan, DryRunError>, ServiceError> {
        let strategy = self.new_strategy(options);
        let orch = self.orch.clone();
        blocking(move || {
            let cluster = orch.cluster();
            Ok(strategy.plan_now(&cluster, now_ms()).map(|stages| Plan {
                stages,
                timing: strategy.timing.clone(),
            }))
        })
        .await
    }

    /// Creates the strategy after the precheck (its warnings too unless `force`); the audit
    /// task builds it.
    pub(crate) async fn create_strategy(
        &self,
        options: StrategyOptions,
        force: bool,
    ) -> Result<Strategy, ServiceError> {
        self.must_be_active()?;
        if let Some(existing) = self.orch.current() {
            return Err(StrategyError::Exists(existing.name).into());
        }
        let precheck = self
            .precheck(super::PrecheckRequest {
                patches: Vec::new(),
                alarm_restrictions: options.alarm_restrictions,
                for_strategy: true,
            })
            .await?;
        if let Some(refusal) = precheck.refusal(force) {
            tracing::warn!(target: "audit", "patch strategy not created: {refusal}");
            return Err(StrategyError::Precheck(refusal).into());
        }
        let mut strategy = self.new_strategy(options);
        if strategy.options.alarm_restrictions == orchestrator::AlarmRestrictions::Baseline {
            // What is active now is the baseline: only alarms new from here on (or worse) block.
            strategy.alarm_baseline = self
                .app
                .alarms()
                .list()
                .iter()
                .map(orchestrator::BaselineAlarm::of)
                .collect();
        }
        let orch = self.orch.clone();
        let metrics = self.app.metrics.clone();
        let created = blocking(move || {
            let saved = orch.with_strategy(|slot| match slot {
                Some(existing) => (Err(StrategyError::Exists(existing.name.clone())), false),
                None => {
                    let mut s = strategy;
                    s.start_build(now_ms());
                    *slot = Some(s.clone());
                    (Ok(s), true)
                }
            });
            let created = saved.map_err(StrategyError::Save)??;
            // Counted here, once stored: the request may be dropped before its answer.
            metrics.strategy_created();
            Ok(created)
        })
        .await;
        let created = self.settled(created).await?;
        self.orch.wake.notify_one();
        tracing::info!(target: "audit", "patch strategy created");
        Ok(created)
    }

    /// Deletes the strategy (`force`: even while it runs).
    pub(crate) async fn delete_strategy(&self, force: bool) -> Result<(), ServiceError> {
        self.must_be_active()?;
        let orch = self.orch.clone();
        let deleted = blocking(move || {
            let saved =
                orch.with_strategy(|slot| match slot.as_ref().map(|s| s.check_delete(force)) {
                    None => (Err(StrategyError::NotFound), false),
                    Some(Err(refused)) => (Err(StrategyError::DeleteRefused(refused)), false),
                    Some(Ok(())) => {
                        *slot = None;
                        (Ok(()), true)
                    }
                });
            saved.map_err(StrategyError::Save)??;
            // The strategy's alarms go with it.
            if let Err(e) = orch.sync_alarms() {
                tracing::warn!("alarms after deleting the strategy: {e}");
            }
            Ok(())
        })
        .await;
        self.settled(deleted).await?;
        tracing::info!(target: "audit", "patch strategy deleted (force: {force})");
        Ok(())
    }

    /// Applies or aborts the strategy (or one stage of it).
    pub(crate) async fn strategy_action(&self, action: Action) -> Result<Strategy, ServiceError> {
        self.must_be_active()?;
        let orch = self.orch.clone();
        let acted = blocking(move || {
            let now = now_ms();
            let saved = orch.with_strategy(|slot| {
                let Some(s) = slot.as_mut() else {
                    return (Err(StrategyError::NotFound), false);
                };
                let outcome = match action {
                    Action::Apply(stage) => s.apply(stage, now),
                    Action::Abort(stage) => s.abort(stage, now),
                };
                match outcome {
                    Ok(()) => (Ok(s.clone()), true),
                    Err(refused) => (Err(StrategyError::ActionRefused(refused)), false),
                }
            });
            Ok(saved.map_err(StrategyError::Save)??)
        })
        .await;
        let strategy = self.settled(acted).await?;
        self.orch.wake.notify_one();
        tracing::info!(target: "audit", "patch strategy action {action:?}");
        Ok(strategy)
    }
}
