//! Cursor pagination shared by every list endpoint.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub const MAX_PAGE_SIZE: u32 = 100;

/// One page of a list. `total` is always null: counting would cost a full scan on every page.
#[derive(Debug, Serialize, ToSchema)]
pub struct CursorPage<T: ToSchema> {
    pub items: Vec<T>,
    /// Opaque cursor for the next page; null on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
    /// Never computed; always null.
    #[schema(required = true, value_type = Option<u64>)]
    pub total: Option<u64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Cursor returned as `next_cursor` by the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

impl PageParams {
    pub fn validate(&self) -> Result<(), crate::error::ApiError> {
        match self.limit {
            Some(limit) if !(1..=MAX_PAGE_SIZE).contains(&limit) => {
                Err(crate::error::ApiError::field(
                    "limit",
                    "OUT_OF_RANGE",
                    format!("must be between 1 and {MAX_PAGE_SIZE}"),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// What list stubs document as their items until each domain defines its own schema.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceRef {
    pub id: uuid::Uuid,
}

/// Validated page parameters as an extractor.
#[derive(Debug)]
pub struct Page(pub PageParams);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Page {
    type Rejection = crate::error::ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let crate::extract::ApiQuery(params) =
            crate::extract::ApiQuery::<PageParams>::from_request_parts(parts, state).await?;
        params.validate()?;
        Ok(Self(params))
    }
}
