//! The policy: which rule a request falls under, what that rule demands, and the `Permit` that
//! proves a request was authorised. Default deny: a request no rule matches is refused. This
//! module owns path normalisation, so the path that was matched is the path that is forwarded.
//! It never reads tokens itself — it receives the verified token's scopes.

pub mod path;
mod pattern;
mod permit;
mod scope;
mod store;
mod table;

pub use self::path::{NormalPath, PathFault};
pub use self::permit::Permit;
pub use self::scope::{Scope, ScopeClaimFault, ScopeSet};
pub use self::store::PolicyStore;
pub use self::table::{
    InsufficientScope, PolicyFault, PolicyLoadError, PolicyProblem, PolicyTable, Route, Rule,
};
