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

/// The bits operations need, as const-generic arguments (`tenancy::Tenant<{ need::USER_MANAGE }>`),
/// each looked up by its name in [`NAMED_BITS`] while compiling (a misspelt name does not build).
pub mod need {
    use super::bit;

    pub const MEMORY_READ: u64 = bit("memory:read");
    pub const MEMORY_DELETE: u64 = bit("memory:delete");
    pub const MEMORY_BULK_EXPORT: u64 = bit("memory:bulk_export");
    pub const DIRECTIVE_READ: u64 = bit("directive:read");
    pub const DIRECTIVE_WRITE: u64 = bit("directive:write");
    pub const DIRECTIVE_PROMOTE: u64 = bit("directive:promote");
    pub const DIRECTIVE_REVOKE: u64 = bit("directive:revoke");
    pub const SESSION_READ: u64 = bit("session:read");
    pub const TRACE_READ: u64 = bit("trace:read");
    pub const USER_MANAGE: u64 = bit("user:manage");
    pub const ORG_SETTINGS_WRITE: u64 = bit("org_settings:write");
    pub const TOKEN_CREATE: u64 = bit("token:create");
    pub const TOKEN_REVOKE: u64 = bit("token:revoke");
}

/// The bit of a permission name, at compile time.
const fn bit(name: &str) -> u64 {
    let mut i = 0;
    while i < NAMED_BITS.len() {
        let (known, bit) = NAMED_BITS[i];
        if same(known.as_bytes(), name.as_bytes()) {
            return 1 << bit;
        }
        i += 1;
    }
    panic!("not a permission name");
}

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
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
