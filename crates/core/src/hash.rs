//! Content hashing used for shard ids, prompt-template hashes and checksums.

/// Full blake3 hash of `bytes` as lowercase hex (64 characters).
pub fn content_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// The first `chars` hex characters of the blake3 hash of `bytes`: a compact id that is still
/// collision-free at corpus scale for `chars >= 24` (96 bits).
pub fn short_hash(bytes: &[u8], chars: usize) -> String {
    let mut hex = content_hash(bytes);
    hex.truncate(chars.min(64));
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_hash_is_a_prefix_of_the_full_hash() {
        let full = content_hash(b"survey");
        let short = short_hash(b"survey", 24);
        assert_eq!(short.len(), 24);
        assert!(full.starts_with(&short));
        assert_ne!(short_hash(b"survey", 24), short_hash(b"surveys", 24));
    }
}
