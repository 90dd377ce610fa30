//! Keyset pagination shared by every list: newest first (`created_at DESC, id DESC`), a page
//! costs the same deep in a list as on page one, and rows inserted while a client pages neither
//! repeat nor hide rows it has not reached.
//!
//! The cursor is opaque to clients: base64url of a version byte, a fingerprint of the list and
//! its filters, and the position (microsecond timestamp, id) of the page's last row. A cursor
//! that does not decode, or was made by another list or other filters, is a 400 on `cursor`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ApiError;

pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;

const CURSOR_VERSION: u8 = 1;
/// A cursor wrapping another service's own cursor (the auth service's token list).
const FOREIGN_CURSOR_VERSION: u8 = 2;
const CURSOR_LEN: usize = 1 + 8 + 8 + 16;

/// One page of a list. `total` is always null: counting would cost a full scan on every page.
#[derive(Debug, Serialize)]
pub struct CursorPage<T: ToSchema> {
    pub items: Vec<T>,
    /// Opaque cursor for the next page; null on the last page.
    pub next_cursor: Option<String>,
    /// Never computed; always null.
    pub total: Option<u64>,
}

/// Written by hand because utoipa's derive inlines a generic parameter: each page is its own
/// component (`CursorPage_Agent`) whose `items` reference the item's component, so generated
/// clients get one `Agent` type, not a copy per list. (`ComposeSchema` is what utoipa's path
/// macro asks of a generic body type, and gives `PartialSchema`; the generics it passes are the
/// inlined item schemas ignored here.)
impl<T: ToSchema> utoipa::__dev::ComposeSchema for CursorPage<T> {
    fn compose(
        _: Vec<utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>>,
    ) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::Ref;
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
        let nullable = |t: Type| SchemaType::from_iter([t, Type::Null]);
        ObjectBuilder::new()
            .description(Some(
                "One page of a list, newest first. `total` is always null: counting would cost a full scan on every page.",
            ))
            .property(
                "items",
                ArrayBuilder::new().items(Ref::from_schema_name(T::name())),
            )
            .required("items")
            .property(
                "next_cursor",
                ObjectBuilder::new()
                    .schema_type(nullable(Type::String))
                    .description(Some(
                        "Opaque cursor for the next page; null on the last page.",
                    )),
            )
            .required("next_cursor")
            .property(
                "total",
                ObjectBuilder::new()
                    .schema_type(nullable(Type::Integer))
                    .description(Some("Never computed; always null.")),
            )
            .required("total")
            .into()
    }
}

impl<T: ToSchema> ToSchema for CursorPage<T> {
    fn name() -> std::borrow::Cow<'static, str> {
        // utoipa's path macro appends `_{item}` to a generic type's name.
        "CursorPage".into()
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((T::name().into_owned(), T::schema()));
        T::schemas(schemas);
    }
}

/// `cursor` and `limit`, read as text so that a bad value is a 400 that names its parameter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Cursor returned as `next_cursor` by the previous page of the same list and filters.
    #[param(pattern = "^[A-Za-z0-9_-]{1,512}$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
}

/// The place in the newest-first order right after which the next page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Position {
    /// The position in a list ordered by a number instead (directive versions by `version_num`,
    /// newest first): the number takes the time slot, the id is unused.
    pub fn sequence(n: i64) -> Self {
        Self {
            created_at: DateTime::from_timestamp_micros(n).unwrap_or_default(),
            id: Uuid::nil(),
        }
    }

    pub fn as_sequence(&self) -> i64 {
        self.created_at.timestamp_micros()
    }
}

/// Which list (and with which filters) a cursor belongs to.
#[derive(Debug, Clone)]
pub struct ListScope(Sha256);

impl ListScope {
    pub fn new(list: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(list.as_bytes());
        Self(hash)
    }

    /// Adds a filter; `None` (filter absent) differs from every value.
    pub fn filter(mut self, name: &str, value: Option<&str>) -> Self {
        self.0.update([0u8]);
        self.0.update(name.as_bytes());
        match value {
            Some(value) => {
                self.0.update([1u8]);
                self.0.update(value.as_bytes());
            }
            None => self.0.update([2u8]),
        }
        self
    }

    fn fingerprint(&self) -> [u8; 8] {
        let digest = self.0.clone().finalize();
        digest[..8].try_into().expect("8 bytes of a SHA-256")
    }
}

/// A validated page request: how many rows, and after which position.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<Position>,
    scope: [u8; 8],
}

impl PageRequest {
    /// Rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// The page of `rows` (fetched with [`PageRequest::fetch_limit`]) and its `next_cursor`.
    pub fn finish<T: ToSchema>(
        &self,
        mut rows: Vec<T>,
        position: impl Fn(&T) -> Position,
    ) -> CursorPage<T> {
        let next_cursor = if rows.len() > self.limit as usize {
            rows.truncate(self.limit as usize);
            rows.last().map(|last| self.encode(position(last)))
        } else {
            None
        };
        CursorPage {
            items: rows,
            next_cursor,
            total: None,
        }
    }

    fn encode(&self, position: Position) -> String {
        let mut bytes = Vec::with_capacity(CURSOR_LEN);
        bytes.push(CURSOR_VERSION);
        bytes.extend_from_slice(&self.scope);
        bytes.extend_from_slice(&position.created_at.timestamp_micros().to_be_bytes());
        bytes.extend_from_slice(position.id.as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

fn bad_cursor() -> ApiError {
    ApiError::field(
        "cursor",
        "INVALID_CURSOR",
        "is not a cursor this list returned",
    )
}

fn decode(cursor: &str, scope: [u8; 8]) -> Result<Position, ApiError> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad_cursor())?;
    if bytes.len() != CURSOR_LEN || bytes[0] != CURSOR_VERSION || bytes[1..9] != scope {
        return Err(bad_cursor());
    }
    let micros = i64::from_be_bytes(bytes[9..17].try_into().expect("8 bytes"));
    let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(bad_cursor)?;
    let id = Uuid::from_slice(&bytes[17..]).map_err(|_| bad_cursor())?;
    Ok(Position { created_at, id })
}

/// Page parameters with `limit` validated; the cursor is checked against its list by
/// [`Page::resolve`], once the handler knows the list's filters.
#[derive(Debug)]
pub struct Page {
    limit: u32,
    cursor: Option<String>,
}

/// A validated page request over another service's list: its own cursor, unwrapped and checked.
#[derive(Debug, Clone)]
pub struct ForeignPageRequest {
    pub limit: u32,
    pub after: Option<String>,
    scope: [u8; 8],
}

impl ForeignPageRequest {
    /// Our opaque cursor around the other service's `cursor`.
    pub fn wrap(&self, cursor: &str) -> String {
        let mut bytes = Vec::with_capacity(9 + cursor.len());
        bytes.push(FOREIGN_CURSOR_VERSION);
        bytes.extend_from_slice(&self.scope);
        bytes.extend_from_slice(cursor.as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

impl Page {
    /// Like [`Page::resolve`], for a list another service pages: the inner cursor must pass
    /// `valid` before it is ever sent on.
    pub fn resolve_foreign(
        self,
        scope: &ListScope,
        valid: fn(&str) -> bool,
    ) -> Result<ForeignPageRequest, ApiError> {
        let scope = scope.fingerprint();
        let after = match self.cursor.as_deref() {
            None => None,
            Some(cursor) => {
                let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad_cursor())?;
                if bytes.len() < 10 || bytes[0] != FOREIGN_CURSOR_VERSION || bytes[1..9] != scope {
                    return Err(bad_cursor());
                }
                let inner = String::from_utf8(bytes[9..].to_vec()).map_err(|_| bad_cursor())?;
                if !valid(&inner) {
                    return Err(bad_cursor());
                }
                Some(inner)
            }
        };
        Ok(ForeignPageRequest {
            limit: self.limit,
            after,
            scope,
        })
    }

    pub fn resolve(self, scope: &ListScope) -> Result<PageRequest, ApiError> {
        let scope = scope.fingerprint();
        let after = match self.cursor.as_deref() {
            None => None,
            Some(cursor) => Some(decode(cursor, scope)?),
        };
        Ok(PageRequest {
            limit: self.limit,
            after,
            scope,
        })
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Page {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let crate::extract::ApiQuery(params) =
            crate::extract::ApiQuery::<PageParams>::from_request_parts(parts, state).await?;
        let limit = match params.limit.as_deref() {
            None => DEFAULT_PAGE_SIZE,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|limit| (1..=MAX_PAGE_SIZE).contains(limit))
                .ok_or_else(|| {
                    ApiError::field(
                        "limit",
                        "OUT_OF_RANGE",
                        format!("must be an integer from 1 to {MAX_PAGE_SIZE}"),
                    )
                })?,
        };
        Ok(Self {
            limit,
            cursor: params.cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(limit: u32, cursor: Option<String>) -> Page {
        Page { limit, cursor }
    }

    #[test]
    fn cursors_round_trip_within_their_list_only() {
        let agents = ListScope::new("agents").filter("status", None);
        let request = page(2, None).resolve(&agents).unwrap();
        let position = Position {
            created_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        let rows = vec![1u8, 2, 3];
        let finished = request.finish(rows, |_| position);
        assert_eq!(finished.items, vec![1, 2]);
        let cursor = finished.next_cursor.unwrap();
        assert_eq!(cursor.len(), 44);

        let next = page(2, Some(cursor.clone())).resolve(&agents).unwrap();
        assert_eq!(next.after, Some(position));

        let filtered = ListScope::new("agents").filter("status", Some("active"));
        assert!(page(2, Some(cursor.clone())).resolve(&filtered).is_err());
        let users = ListScope::new("users");
        assert!(page(2, Some(cursor.clone())).resolve(&users).is_err());
        for bad in ["", "x", "!!!!", &cursor[..43], &format!("{cursor}A")] {
            assert!(page(2, Some(bad.into())).resolve(&agents).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_last_page_has_no_cursor() {
        let request = page(3, None).resolve(&ListScope::new("x")).unwrap();
        let finished = request.finish(vec![1u8, 2, 3], |_| unreachable!());
        assert_eq!(finished.items.len(), 3);
        assert!(finished.next_cursor.is_none());
    }
}
