//! Alarm operations (`fm alarm-list`, and raising or clearing alarms from outside).

use orchestrator::Alarm;

use super::{Service, ServiceError, blocking};
use crate::alarms::{AlarmError, NewAlarm};

/// Which alarms a clear takes.
#[derive(Clone, Debug)]
pub(crate) enum AlarmFilter {
    /// The one with this UUID.
    Uuid(String),
    /// Every one with this alarm id (and, if given, this entity).
    Id {
        alarm_id: String,
        entity_instance_id: Option<String>,
    },
}

impl AlarmFilter {
    fn matches(&self, a: &Alarm) -> bool {
        match self {
            AlarmFilter::Uuid(uuid) => a.uuid == *uuid,
            AlarmFilter::Id {
                alarm_id,
                entity_instance_id,
            } => {
                a.alarm_id == *alarm_id
                    && entity_instance_id
                        .as_ref()
                        .is_none_or(|e| a.entity_instance_id == *e)
            }
        }
    }

    fn name(&self) -> &str {
        match self {
            AlarmFilter::Uuid(uuid) => uuid,
            AlarmFilter::Id { alarm_id, .. } => alarm_id,
        }
    }
}

impl Service {
    /// The active alarms.
    pub(crate) fn alarms(&self) -> Vec<Alarm> {
        self.app.alarms().list().to_vec()
    }

    /// Raises an alarm; its UUID.
    pub(crate) async fn raise_alarm(&self, alarm: NewAlarm) -> Result<String, ServiceError> {
        self.must_be_active()?;
        let app = self.app.clone();
        let raised = blocking(move || Ok(app.alarms().raise(alarm)?)).await;
        self.settled(raised).await
    }

    /// Clears the alarms the filter takes; how many (none is an error).
    pub(crate) async fn clear_alarms(&self, filter: AlarmFilter) -> Result<usize, ServiceError> {
        self.must_be_active()?;
        let app = self.app.clone();
        let cleared = blocking(move || match app.alarms().clear(|a| filter.matches(a))? {
            0 => Err(AlarmError::NotFound(filter.name().to_owned()).into()),
            n => Ok(n),
        })
        .await;
        self.settled(cleared).await
    }
}
