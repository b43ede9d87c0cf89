//! What both binaries need, and nothing else.
//!
//! Why a module of its own: a fact that the server and the client must agree
//! on (an address's spelling, a duration's, an exit code, the default port)
//! is written once, here, so the two cannot drift apart. The rest of the
//! crate is either the daemon's (`server`) or the client's (`client`); code
//! moves here only when both use it.

/// Deserializes a `FromStr` type from a string (in TOML, say), keeping its
/// message, and serializes it through `Display`: the configuration spells a
/// value as the command line does.
macro_rules! serde_via_str {
    ($type:ty) => {
        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    };
}
use serde_via_str;

pub mod address;
pub mod duration;
pub mod exit_code;
pub mod manual;
pub mod output;
pub mod protocol;
pub(crate) mod readiness;
pub(crate) mod socket_calls;
