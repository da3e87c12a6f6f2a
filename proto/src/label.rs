//! Metric label values as enums, so that a metric's label values have one source of truth.
//!
//! A broker exports every value of a labelled counter at 0 from the start (a `rate()` over a
//! series that appears only with its first event has nothing to work on), so it needs the
//! full list of values. [`crate::label_enum!`] defines a field-less enum together with that list
//! (`ALL`) and each value's text (`as_str`): a value cannot be produced without being listed.

/// Defines a field-less enum whose variants are the values of one metric label, with
/// `ALL` (every value, in declaration order), `as_str` (the label text) and `Display`.
///
/// ```
/// hearth_proto::label_enum! {
///     /// How a door was left.
///     pub enum DoorState {
///         /// Shut.
///         Shut => "shut",
///         /// Open.
///         Open => "open",
///     }
/// }
/// assert_eq!(DoorState::ALL.len(), 2);
/// assert_eq!(DoorState::Open.as_str(), "open");
/// ```
#[macro_export]
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $label:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in declaration order: the label values exported at 0 from the start.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The label value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $label),+
                }
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
