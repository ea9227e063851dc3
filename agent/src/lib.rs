//! The host agent as a library: reports the host's state to the controller and installs or
//! removes packages into its root filesystem, atomically and crash-safely.
//!
//! Not built yet: see the "Hosts" issue.
