//! The controller's on-disk patch store: patches by repo state (available, applied,
//! committed), the package store, and the per-release software repository that hosts install
//! from. Every mutation is crash-safe.
//!
//! Not built yet: see the "Patch repository" issue.
