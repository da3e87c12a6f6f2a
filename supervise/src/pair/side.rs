//! The two brokers of a Binary Star pair by their configured role ([`Side`]), and which of
//! them a worker registers with ([`Reach`]).

use std::fmt;

use hearth_proto::status::Role;

/// One broker of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// `--role primary`: active when both start.
    Primary,
    /// `--role backup`: passive until the primary fails.
    Backup,
}

impl Side {
    /// Both sides, primary first (the order of every pair of things per side here).
    pub const BOTH: [Side; 2] = [Side::Primary, Side::Backup];

    /// 0 for the primary, 1 for the backup: its place in `[T; 2]` and in
    /// [`crate::Pair::endpoints`].
    pub fn index(self) -> usize {
        match self {
            Side::Primary => 0,
            Side::Backup => 1,
        }
    }

    /// The other broker.
    pub fn other(self) -> Side {
        match self {
            Side::Primary => Side::Backup,
            Side::Backup => Side::Primary,
        }
    }

    /// `primary` or `backup`, as `--role` spells it; also the broker's name in messages.
    pub fn role(self) -> &'static str {
        self.as_role().as_str()
    }

    /// The broker's `--role`.
    pub fn as_role(self) -> Role {
        match self {
            Side::Primary => Role::Primary,
            Side::Backup => Role::Backup,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.role())
    }
}

/// Which brokers a worker connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// One `--broker` per broker (DESIGN.md asks this of a pair's workers).
    Both,
    /// Only this broker's frontend.
    Only(Side),
}

impl Reach {
    /// Whether a worker with this reach registers with `side`.
    pub fn includes(self, side: Side) -> bool {
        match self {
            Reach::Both => true,
            Reach::Only(s) => s == side,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_name_and_index_themselves() {
        assert_eq!(Side::Primary.other(), Side::Backup);
        assert_eq!(
            Side::BOTH.map(|s| (s.index(), s.to_string())),
            [(0, "primary".to_owned()), (1, "backup".to_owned())]
        );
        assert!(Reach::Both.includes(Side::Backup));
        assert!(!Reach::Only(Side::Primary).includes(Side::Backup));
    }
}
