//! Enums the API spells on the wire, each variant declared once with its name.
//!
//! [`named!`](crate::wire::names::named) gives the enum (serialized, parsed and documented in
//! those names), its `NAMES` in declaration order (what a body's or query's parser accepts, see
//! `Kind::choice`), `as_str` and `parse`; a list of names written beside the enum could drift
//! from it.

/// An enum the wire names: `named! { /// doc  pub enum Role { Owner = "owner", ... } }`.
macro_rules! named {
    ($(#[$meta:meta])* pub enum $name:ident {
        $($(#[$vmeta:meta])* $variant:ident = $text:tt),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize,
            utoipa::ToSchema,
        )]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every variant's name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl $crate::wire::names::Named for $name {
            const NAMES: &'static [&'static str] = $name::NAMES;
        }
    };
}

pub(crate) use named;

/// What `named!` declares, for code generic over such enums (`Kind::choice`).
pub trait Named: utoipa::ToSchema + 'static {
    const NAMES: &'static [&'static str];
}
