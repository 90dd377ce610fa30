//! Marks a handler or layer puts on a response for a layer further out to read. They live here,
//! below both, so that domains and probes never import from `middleware/` (and the layers never
//! from a domain): the graph stays one-way.

/// The rare error status whose body is itself the contract (the readiness report's 503, a
/// replayed stored error): the envelope layer passes it through untouched.
#[derive(Debug, Clone, Copy)]
pub struct KeepBody;

/// An answer holding a secret shown once (a new token's plaintext): the idempotency layer never
/// stores it, and refuses a retry instead of replaying it.
#[derive(Debug, Clone, Copy)]
pub struct NotReplayable;
