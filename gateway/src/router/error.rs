//! Build errors. The admin API returns `Display` verbatim, so every message
//! names the route id and the offending field (`route 7: uris[0]: ...`).

use sluice_expr::VarsError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteBuildError {
    /// A field failed validation; `field` is a path like `uris[0]`, `hosts[2]`.
    #[error("route {id}: {field}: {reason}")]
    InvalidField {
        id: String,
        field: String,
        reason: String,
    },
    /// The `vars` expression failed to compile; the error carries its own
    /// `vars[i]` location. (Not a `#[source]`: the text is already part of
    /// this message and chain printers would repeat it.)
    #[error("route {id}: {error}")]
    InvalidVars { id: String, error: VarsError },
    /// Two specs share an id, which would make tie-breaking (and the admin
    /// API's idea of "which route") ambiguous.
    #[error("route {id}: id: duplicate route id")]
    DuplicateId { id: String },
}

impl RouteBuildError {
    pub(crate) fn field(id: &str, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            id: id.to_owned(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The id of the route that failed.
    pub fn route_id(&self) -> &str {
        match self {
            Self::InvalidField { id, .. }
            | Self::InvalidVars { id, .. }
            | Self::DuplicateId { id } => id,
        }
    }
}
