//! The platform's permission bitmap (ADR-0009) and the names the API's JSON uses for its bits.

/// The platform's 64-bit permission bitmap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Permissions(pub u64);

/// Every named bit: (JSON name, bit). Bits 56–63 are reserved.
pub const NAMED_BITS: &[(&str, u32)] = &[
    ("memory:read", 0),
    ("memory:write", 1),
    ("memory:delete", 2),
    ("memory:bulk_export", 3),
    ("directive:read", 8),
    ("directive:write", 9),
    ("directive:promote", 10),
    ("directive:revoke", 11),
    ("session:create", 16),
    ("session:read", 17),
    ("session:terminate", 18),
    ("trace:read", 24),
    ("trace:export", 25),
    ("user:manage", 32),
    ("billing:read", 33),
    ("billing:manage", 34),
    ("org_settings:write", 35),
    ("token:create", 36),
    ("token:revoke", 37),
    ("marketplace:publish", 40),
    ("marketplace:install", 41),
    ("federation:share", 48),
];

/// The JSON names of [`NAMED_BITS`], in bit order.
pub const NAMES: [&str; NAMED_BITS.len()] = {
    let mut names = [""; NAMED_BITS.len()];
    let mut i = 0;
    while i < NAMED_BITS.len() {
        names[i] = NAMED_BITS[i].0;
        i += 1;
    }
    names
};

/// The bits operations need, as const-generic arguments (`tenancy::Tenant<{ need::USER_MANAGE }>`);
/// each is the bit of its name in [`NAMED_BITS`] (a test holds them together).
pub mod need {
    pub const MEMORY_READ: u64 = 1 << 0;
    pub const MEMORY_DELETE: u64 = 1 << 2;
    pub const MEMORY_BULK_EXPORT: u64 = 1 << 3;
    pub const DIRECTIVE_READ: u64 = 1 << 8;
    pub const DIRECTIVE_WRITE: u64 = 1 << 9;
    pub const DIRECTIVE_PROMOTE: u64 = 1 << 10;
    pub const DIRECTIVE_REVOKE: u64 = 1 << 11;
    pub const SESSION_READ: u64 = 1 << 17;
    pub const TRACE_READ: u64 = 1 << 24;
    pub const USER_MANAGE: u64 = 1 << 32;
    pub const ORG_SETTINGS_WRITE: u64 = 1 << 35;
    pub const TOKEN_CREATE: u64 = 1 << 36;
    pub const TOKEN_REVOKE: u64 = 1 << 37;
}

impl Permissions {
    pub fn contains(self, required: Permissions) -> bool {
        self.0 & required.0 == required.0
    }

    /// The bit of a JSON permission name.
    pub fn from_name(name: &str) -> Option<Self> {
        NAMED_BITS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, bit)| Self(1 << bit))
    }

    /// The names of the named bits that are set, in bit order.
    pub fn names(self) -> Vec<&'static str> {
        NAMED_BITS
            .iter()
            .filter(|(_, bit)| self.0 & (1 << bit) != 0)
            .map(|(name, _)| *name)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_needed_bits_are_their_names_bits() {
        for (name, bit) in [
            ("memory:read", need::MEMORY_READ),
            ("memory:delete", need::MEMORY_DELETE),
            ("memory:bulk_export", need::MEMORY_BULK_EXPORT),
            ("directive:read", need::DIRECTIVE_READ),
            ("directive:write", need::DIRECTIVE_WRITE),
            ("directive:promote", need::DIRECTIVE_PROMOTE),
            ("directive:revoke", need::DIRECTIVE_REVOKE),
            ("session:read", need::SESSION_READ),
            ("trace:read", need::TRACE_READ),
            ("user:manage", need::USER_MANAGE),
            ("org_settings:write", need::ORG_SETTINGS_WRITE),
            ("token:create", need::TOKEN_CREATE),
            ("token:revoke", need::TOKEN_REVOKE),
        ] {
            assert_eq!(
                Permissions::from_name(name),
                Some(Permissions(bit)),
                "{name}"
            );
        }
    }

    #[test]
    fn admin_is_the_platforms_number() {
        let admin = [
            "memory:read",
            "memory:write",
            "session:create",
            "session:read",
            "trace:read",
            "directive:read",
            "directive:write",
            "directive:promote",
            "directive:revoke",
            "session:terminate",
            "trace:export",
            "user:manage",
            "billing:read",
            "billing:manage",
            "org_settings:write",
            "token:create",
            "token:revoke",
        ]
        .iter()
        .fold(0, |bits, name| {
            bits | Permissions::from_name(name).unwrap().0
        });
        assert_eq!(admin, 270_633_733_891);
        assert_eq!(Permissions(admin).names().len(), 17);
        assert_eq!(Permissions::from_name("memory:admin"), None);
    }
}
