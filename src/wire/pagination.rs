//! Keyset pagination shared by every list: newest first (`created_at DESC, id DESC`), a page
//! costs the same deep in a list as on page one, and rows inserted while a client pages neither
//! repeat nor hide rows it has not reached.
//!
//! The cursor is opaque to clients and tamper-evident: base64url of a version byte, the position
//! (microsecond timestamp, id) of the page's last row, and an HMAC-SHA256 tag (16 bytes) over
//! the organization, the list with its filters and the position, keyed from the configuration
//! (`IBEX_API_CURSOR_KEYS`; older keys still verify during a rotation). A cursor that does not
//! decode, was changed, or was made for another organization, list or filters is a 400
//! INVALID_CURSOR.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ApiError;

pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;

/// Version 3: signed (1 and 2, unsigned, are refused).
const CURSOR_VERSION: u8 = 3;
/// A cursor wrapping another service's own cursor (the auth service's token list).
const FOREIGN_CURSOR_VERSION: u8 = 4;
/// The version byte, the microsecond timestamp and the id.
const POSITION_LEN: usize = 1 + 8 + 16;
/// A truncated HMAC-SHA256: 128 bits, beyond guessing at any request rate.
const TAG_LEN: usize = 16;

type HmacSha256 = Hmac<Sha256>;

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
    /// Cursor returned as `next_cursor` by the previous page of the same list and filters, for
    /// the same organization. Opaque and signed: any other value, or one changed in any way, is
    /// `400 INVALID_CURSOR`.
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
    pub fn new(created_at: DateTime<Utc>, id: Uuid) -> Self {
        Self { created_at, id }
    }

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

    fn digest(&self) -> [u8; 32] {
        self.0.clone().finalize().into()
    }
}

/// The keys cursors are signed with: the first signs, every one verifies (a rotation adds the
/// new key in front and keeps the old one until the cursors it signed have aged out).
#[derive(Clone)]
pub struct CursorKeys(Arc<Vec<HmacSha256>>);

impl std::fmt::Debug for CursorKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CursorKeys({} keys, ***)", self.0.len())
    }
}

impl CursorKeys {
    /// `secrets`: at least one; the configuration checks their length.
    pub fn new<S: AsRef<[u8]>>(secrets: &[S]) -> Self {
        assert!(!secrets.is_empty(), "at least one cursor key");
        Self(Arc::new(
            secrets
                .iter()
                .map(|s| HmacSha256::new_from_slice(s.as_ref()).expect("HMAC takes any key"))
                .collect(),
        ))
    }

    /// A key of this process only, for a configuration that names none: cursors then work
    /// only on the replica that issued them.
    pub fn ephemeral() -> Self {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("the operating system's random source");
        Self::new(&[secret])
    }

    fn tag(key: &HmacSha256, binding: &Binding, payload: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = key.clone();
        mac.update(binding.org.as_bytes());
        mac.update(&binding.scope);
        mac.update(payload);
        let full = mac.finalize().into_bytes();
        full[..TAG_LEN]
            .try_into()
            .expect("16 bytes of a SHA-256 HMAC")
    }

    fn sign(&self, binding: &Binding, payload: &[u8]) -> [u8; TAG_LEN] {
        Self::tag(&self.0[0], binding, payload)
    }

    /// Any key's tag, compared in constant time.
    fn verify(&self, binding: &Binding, payload: &[u8], tag: &[u8]) -> bool {
        self.0.iter().any(|key| {
            let expected = Self::tag(key, binding, payload);
            tag.len() == TAG_LEN
                && expected
                    .iter()
                    .zip(tag)
                    .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                    == 0
        })
    }
}

/// What a cursor is bound to: the organization, and the list with its filters.
#[derive(Debug, Clone)]
struct Binding {
    keys: CursorKeys,
    org: Uuid,
    scope: [u8; 32],
}

impl Binding {
    /// base64url of `payload` (version byte first) and its tag.
    fn seal(&self, mut payload: Vec<u8>) -> String {
        let tag = self.keys.sign(self, &payload);
        payload.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(payload)
    }

    /// The payload of a cursor this binding sealed with `version`, or 400 INVALID_CURSOR.
    fn open(&self, cursor: &str, version: u8) -> Result<Vec<u8>, ApiError> {
        let mut bytes = URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| ApiError::InvalidCursor)?;
        if bytes.len() <= 1 + TAG_LEN || bytes[0] != version {
            return Err(ApiError::InvalidCursor);
        }
        let tag = bytes.split_off(bytes.len() - TAG_LEN);
        if !self.keys.verify(self, &bytes, &tag) {
            return Err(ApiError::InvalidCursor);
        }
        Ok(bytes)
    }
}

/// A validated page request: how many rows, and after which position.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<Position>,
    binding: Binding,
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
        let mut bytes = Vec::with_capacity(POSITION_LEN + TAG_LEN);
        bytes.push(CURSOR_VERSION);
        bytes.extend_from_slice(&position.created_at.timestamp_micros().to_be_bytes());
        bytes.extend_from_slice(position.id.as_bytes());
        self.binding.seal(bytes)
    }
}

fn decode(cursor: &str, binding: &Binding) -> Result<Position, ApiError> {
    let bytes = binding.open(cursor, CURSOR_VERSION)?;
    if bytes.len() != POSITION_LEN {
        return Err(ApiError::InvalidCursor);
    }
    let micros = i64::from_be_bytes(bytes[1..9].try_into().expect("8 bytes"));
    let created_at = DateTime::from_timestamp_micros(micros).ok_or(ApiError::InvalidCursor)?;
    let id = Uuid::from_slice(&bytes[9..]).map_err(|_| ApiError::InvalidCursor)?;
    Ok(Position { created_at, id })
}

/// Page parameters with `limit` validated; the cursor is checked against its list by
/// [`Page::resolve`], once the handler knows the list's filters.
#[derive(Debug)]
pub struct Page {
    limit: u32,
    cursor: Option<String>,
    keys: CursorKeys,
    org: Uuid,
}

/// A validated page request over another service's list: its own cursor, unwrapped and checked.
#[derive(Debug, Clone)]
pub struct ForeignPageRequest {
    pub limit: u32,
    pub after: Option<String>,
    binding: Binding,
}

impl ForeignPageRequest {
    /// Our opaque, signed cursor around the other service's `cursor`.
    pub fn wrap(&self, cursor: &str) -> String {
        let mut bytes = Vec::with_capacity(1 + cursor.len() + TAG_LEN);
        bytes.push(FOREIGN_CURSOR_VERSION);
        bytes.extend_from_slice(cursor.as_bytes());
        self.binding.seal(bytes)
    }
}

impl Page {
    /// A page request made outside the extractor (the cursor benchmark, `examples/cursor_cost.rs`).
    pub fn new(limit: u32, cursor: Option<String>, keys: CursorKeys, org: Uuid) -> Self {
        Self {
            limit,
            cursor,
            keys,
            org,
        }
    }

    fn binding(&self, scope: &ListScope) -> Binding {
        Binding {
            keys: self.keys.clone(),
            org: self.org,
            scope: scope.digest(),
        }
    }

    /// Like [`Page::resolve`], for a list another service pages: the inner cursor must pass
    /// `valid` before it is ever sent on.
    pub fn resolve_foreign(
        self,
        scope: &ListScope,
        valid: fn(&str) -> bool,
    ) -> Result<ForeignPageRequest, ApiError> {
        let binding = self.binding(scope);
        let after = match self.cursor.as_deref() {
            None => None,
            Some(cursor) => {
                let bytes = binding.open(cursor, FOREIGN_CURSOR_VERSION)?;
                let inner =
                    String::from_utf8(bytes[1..].to_vec()).map_err(|_| ApiError::InvalidCursor)?;
                if !valid(&inner) {
                    return Err(ApiError::InvalidCursor);
                }
                Some(inner)
            }
        };
        Ok(ForeignPageRequest {
            limit: self.limit,
            after,
            binding,
        })
    }

    pub fn resolve(self, scope: &ListScope) -> Result<PageRequest, ApiError> {
        let binding = self.binding(scope);
        let after = match self.cursor.as_deref() {
            None => None,
            Some(cursor) => Some(decode(cursor, &binding)?),
        };
        Ok(PageRequest {
            limit: self.limit,
            after,
            binding,
        })
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Page {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let crate::wire::extract::ApiQuery(params) =
            crate::wire::extract::ApiQuery::<PageParams>::from_request_parts(parts, state).await?;
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
        // Both come from the layers in front of every list: the keys from the application, the
        // organization from the auth layer.
        let keys = parts
            .extensions
            .get::<CursorKeys>()
            .cloned()
            .ok_or(ApiError::Internal)?;
        let org = parts
            .extensions
            .get::<crate::auth::Caller>()
            .map_or(Uuid::nil(), |caller| caller.org_id);
        Ok(Self {
            limit,
            cursor: params.cursor,
            keys,
            org,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> CursorKeys {
        CursorKeys::new(&["a key of at least thirty-two bytes!!"])
    }

    fn page_with(keys: &CursorKeys, org: Uuid, cursor: Option<String>) -> Page {
        Page {
            limit: 2,
            cursor,
            keys: keys.clone(),
            org,
        }
    }

    fn first_cursor(keys: &CursorKeys, org: Uuid, scope: &ListScope, at: Position) -> String {
        let request = page_with(keys, org, None).resolve(scope).unwrap();
        let finished = request.finish(vec![1u8, 2, 3], |_| at);
        assert_eq!(finished.items, vec![1, 2]);
        finished.next_cursor.unwrap()
    }

    #[test]
    fn cursors_round_trip_within_their_org_and_list_only() {
        let (keys, org) = (keys(), Uuid::now_v7());
        let agents = ListScope::new("agents").filter("status", None);
        let position = Position {
            created_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        let cursor = first_cursor(&keys, org, &agents, position);
        assert_eq!(cursor.len(), 55);
        let next = page_with(&keys, org, Some(cursor.clone()))
            .resolve(&agents)
            .unwrap();
        assert_eq!(next.after, Some(position));

        let refused = |keys: &CursorKeys, org: Uuid, scope: &ListScope, cursor: &str| {
            matches!(
                page_with(keys, org, Some(cursor.to_owned())).resolve(scope),
                Err(ApiError::InvalidCursor)
            )
        };
        let filtered = ListScope::new("agents").filter("status", Some("active"));
        assert!(refused(&keys, org, &filtered, &cursor));
        assert!(refused(&keys, org, &ListScope::new("users"), &cursor));
        assert!(
            refused(&keys, Uuid::now_v7(), &agents, &cursor),
            "another org"
        );
        let other_key = CursorKeys::new(&["another key of thirty-two bytes or more"]);
        assert!(refused(&other_key, org, &agents, &cursor));
        for bad in ["", "x", "!!!!", &cursor[..54], &format!("{cursor}A")] {
            assert!(refused(&keys, org, &agents, bad), "{bad}");
        }
        // Every flipped bit of the decoded cursor is noticed.
        let raw = URL_SAFE_NO_PAD.decode(&cursor).unwrap();
        for byte in 0..raw.len() {
            let mut flipped = raw.clone();
            flipped[byte] ^= 0x01;
            assert!(refused(
                &keys,
                org,
                &agents,
                &URL_SAFE_NO_PAD.encode(flipped)
            ));
        }
    }

    #[test]
    fn a_rotation_keeps_old_cursors_valid() {
        let org = Uuid::now_v7();
        let scope = ListScope::new("users");
        let old = CursorKeys::new(&["the old key, thirty-two bytes long.."]);
        let rotated = CursorKeys::new(&[
            "the new key, thirty-two bytes long..",
            "the old key, thirty-two bytes long..",
        ]);
        let at = Position {
            created_at: Utc::now(),
            id: Uuid::now_v7(),
        };
        let issued_before = first_cursor(&old, org, &scope, at);
        assert!(
            page_with(&rotated, org, Some(issued_before))
                .resolve(&scope)
                .is_ok()
        );
        let issued_after = first_cursor(&rotated, org, &scope, at);
        assert!(
            page_with(&old, org, Some(issued_after))
                .resolve(&scope)
                .is_err()
        );
    }

    #[test]
    fn foreign_cursors_are_signed_too() {
        let (keys, org) = (keys(), Uuid::now_v7());
        let scope = ListScope::new("tokens");
        let first = page_with(&keys, org, None)
            .resolve_foreign(&scope, |_| true)
            .unwrap();
        let wrapped = first.wrap("123|inner");
        let next = page_with(&keys, org, Some(wrapped.clone()))
            .resolve_foreign(&scope, |_| true)
            .unwrap();
        assert_eq!(next.after.as_deref(), Some("123|inner"));
        assert!(
            page_with(&keys, Uuid::now_v7(), Some(wrapped))
                .resolve_foreign(&scope, |_| true)
                .is_err()
        );
    }

    #[test]
    fn the_last_page_has_no_cursor() {
        let request = page_with(&keys(), Uuid::nil(), None)
            .resolve(&ListScope::new("x"))
            .unwrap();
        let finished = request.finish(vec![1u8, 2], |_| unreachable!());
        assert_eq!(finished.items.len(), 2);
        assert!(finished.next_cursor.is_none());
    }
}
