//! The controller daemon as a library: the patching REST API, orchestration API, inventory,
//! agent endpoint and the software repository served to hosts.
//!
//! Not built yet: see the "Patch repository" and "Hosts" issues.
