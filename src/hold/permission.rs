//! What a caller may want of the hold, and what crew roles grant.

/// What a caller wants to do with the hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Pull blobs.
    BlobRead,
    /// Push blobs.
    BlobWrite,
    /// Manage the crew.
    CrewAdmin,
}

impl Permission {
    pub const ALL: [Permission; 3] = [
        Permission::BlobRead,
        Permission::BlobWrite,
        Permission::CrewAdmin,
    ];

    /// The string crew records carry.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::BlobRead => "blob:read",
            Permission::BlobWrite => "blob:write",
            Permission::CrewAdmin => "crew:admin",
        }
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Permission {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown permission {s:?}: blob:read, blob:write or crew:admin"))
    }
}

/// The permissions a role (`read`, `write`, `admin`) stands for; `None` for other roles.
#[must_use]
pub fn role_permissions(role: &str) -> Option<&'static [Permission]> {
    use Permission::{BlobRead, BlobWrite, CrewAdmin};
    match role {
        "read" => Some(&[BlobRead]),
        "write" => Some(&[BlobRead, BlobWrite]),
        "admin" => Some(&[BlobRead, BlobWrite, CrewAdmin]),
        _ => None,
    }
}
