//! What a data set *is*, independent of where it lies: its format, its
//! counts and a SHA-256 fingerprint of its content. Results record this, so
//! that runs made on different machines (where the same archive sits at
//! different paths) can be merged, and runs on different data cannot.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The identity of the data a reproduction trained and tested on.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DataId {
    /// The source as the user gave it (`--data`, exactly as typed), or
    /// `synthetic`. Informational: comparisons of protocols ignore it.
    pub source: String,
    /// How the data was stored and chosen, e.g. `CIFAR-10 image folders in a .tar.gz`.
    pub format: String,
    /// Items per split, e.g. `{"train": 50000, "test": 10000}`.
    pub counts: BTreeMap<String, usize>,
    /// SHA-256 (hex) of the decoded content; see [`Fingerprint`] for what each
    /// experiment feeds it.
    pub sha256: String,
}

/// Incremental SHA-256 over the decoded arrays of a data set. Each part is
/// prefixed with its name and length, so that moving bytes from one part to
/// the next changes the digest.
pub struct Fingerprint(Sha256);

impl Fingerprint {
    pub fn new() -> Fingerprint {
        Fingerprint(Sha256::new())
    }

    /// Add one named part.
    pub fn part(&mut self, name: &str, bytes: &[u8]) -> &mut Self {
        self.0.update((name.len() as u64).to_le_bytes());
        self.0.update(name.as_bytes());
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    /// The digest so far, as 64 lowercase hex digits.
    pub fn hex(&self) -> String {
        hex(&self.0.clone().finalize())
    }
}

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint::new()
    }
}

/// SHA-256 of `bytes` as 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_abc_is_the_fips_test_vector() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn moving_bytes_between_parts_changes_the_fingerprint() {
        let a = Fingerprint::new().part("x", b"ab").part("y", b"c").hex();
        let b = Fingerprint::new().part("x", b"a").part("y", b"bc").hex();
        assert_ne!(a, b);
    }
}
