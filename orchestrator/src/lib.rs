//! Patch orchestration: the strategy model (phases, stages, steps), the builder that plans a
//! rollout from the inventory, and the persisted, resumable runner.
//!
//! Not built yet: see the "Orchestration" issue.
