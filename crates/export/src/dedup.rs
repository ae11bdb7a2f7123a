//! Duplicate detection over row texts. Exact duplicates share a hash of the normalised text
//! (lowercase, letters and digits only, single spaces). Near duplicates are found in one pass
//! with MinHash over word 3-shingles (64 hash functions) and locality-sensitive hashing (8
//! bands of 8 rows): each row is compared with the kept rows that share a band with it, by the
//! share of equal MinHash values (an estimate of their Jaccard similarity, within about ±0.05
//! at 0.8); at or above the threshold it is a duplicate of the earlier row and dropped. Only
//! kept rows become representatives, so families of near-identical rows stay cheap.
//! [`NearDuplicates`] is that scan in memory (128 bytes of signature per kept row plus about
//! 16 bytes per band in the index; 32-bit band keys: a chance collision only costs one extra
//! comparison); exports make the same decisions with bounded memory in `decide`.

use std::collections::HashMap;

/// Hash functions of the MinHash signature.
pub(crate) const PERMUTATIONS: usize = 64;
pub(crate) const BANDS: usize = 8;
const ROWS_PER_BAND: usize = PERMUTATIONS / BANDS;
/// Representatives one LSH bucket holds at most.
pub(crate) const BUCKET_REPRESENTATIVES: usize = 32;

/// A MinHash signature.
pub type Signature = [u16; PERMUTATIONS];

/// Lowercase words of letters and digits, single-spaced.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

/// The first 8 bytes of the blake3 hash of `bytes`.
pub(crate) fn hash64(bytes: &[u8]) -> u64 {
    let digest = blake3::hash(bytes);
    u64::from_le_bytes(digest.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// Hash of the normalised text, for exact duplicates.
pub fn exact_key(normalized: &str) -> u64 {
    hash64(normalized.as_bytes())
}

/// Hashes of the word 3-shingles (the whole text when shorter).
fn shingles(normalized: &str) -> Vec<u64> {
    let words: Vec<&str> = normalized.split(' ').filter(|w| !w.is_empty()).collect();
    if words.len() < 3 {
        return vec![hash64(normalized.as_bytes())];
    }
    words
        .windows(3)
        .map(|w| hash64(w.join(" ").as_bytes()))
        .collect()
}

/// The MinHash signature of a text, each minimum truncated to 16 bits (a chance collision of
/// 1 in 65,536 barely moves the estimate).
pub fn signature(normalized: &str) -> [u16; PERMUTATIONS] {
    let mut minima = [u64::MAX; PERMUTATIONS];
    for shingle in shingles(normalized) {
        for (i, minimum) in minima.iter_mut().enumerate() {
            let a = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(2 * i as u64 + 1) | 1;
            let b = 0xD1B5_4A32_D192_ED03u64.wrapping_mul(i as u64 + 7);
            let value = shingle.wrapping_mul(a).wrapping_add(b);
            *minimum = (*minimum).min(value);
        }
    }
    minima.map(|m| (m >> 48) as u16)
}

/// Estimated Jaccard similarity: the share of equal MinHash values.
pub fn similarity(a: &[u16; PERMUTATIONS], b: &[u16; PERMUTATIONS]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / PERMUTATIONS as f64
}

pub(crate) fn band_key(signature: &[u16; PERMUTATIONS], band: usize) -> u32 {
    let mut bytes = Vec::with_capacity(ROWS_PER_BAND * 2 + 1);
    bytes.push(band as u8);
    for value in &signature[band * ROWS_PER_BAND..(band + 1) * ROWS_PER_BAND] {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    hash64(&bytes) as u32
}

/// A bucket entry: one representative inline, or (high bit set) an index into the overflow
/// lists; most buckets hold one row, so they cost no allocation.
const OVERFLOW: u32 = 1 << 31;

/// Streaming near-duplicate detector; rows must be offered in export order.
pub struct NearDuplicates {
    threshold: f64,
    signatures: Vec<[u16; PERMUTATIONS]>,
    buckets: HashMap<u32, u32>,
    overflow: Vec<Vec<u32>>,
}

impl NearDuplicates {
    pub fn new(threshold: f64) -> Self {
        Self {
            threshold,
            signatures: Vec::new(),
            buckets: HashMap::new(),
            overflow: Vec::new(),
        }
    }

    fn members(&self, key: u32) -> &[u32] {
        match self.buckets.get(&key) {
            None => &[],
            Some(&slot) if slot & OVERFLOW != 0 => &self.overflow[(slot & !OVERFLOW) as usize],
            Some(slot) => std::slice::from_ref(slot),
        }
    }

    fn insert(&mut self, key: u32, row: u32) {
        let Some(slot) = self.buckets.get(&key).copied() else {
            self.buckets.insert(key, row);
            return;
        };
        if slot & OVERFLOW == 0 {
            self.overflow.push(vec![slot, row]);
            self.buckets
                .insert(key, OVERFLOW | (self.overflow.len() as u32 - 1));
            return;
        }
        let members = &mut self.overflow[(slot & !OVERFLOW) as usize];
        if members.len() < BUCKET_REPRESENTATIVES {
            members.push(row);
        }
    }

    /// True when `normalized` is a near duplicate of a row kept before; otherwise the row is
    /// kept and becomes a representative.
    pub fn is_duplicate(&mut self, normalized: &str) -> bool {
        self.is_duplicate_signature(signature(normalized))
    }

    /// [`NearDuplicates::is_duplicate`] for a signature already computed.
    pub fn is_duplicate_signature(&mut self, signature: Signature) -> bool {
        let keys: [u32; BANDS] = std::array::from_fn(|band| band_key(&signature, band));
        for key in keys {
            let near = self
                .members(key)
                .iter()
                .any(|&m| similarity(&self.signatures[m as usize], &signature) >= self.threshold);
            if near {
                return true;
            }
        }
        let index = self.signatures.len() as u32;
        self.signatures.push(signature);
        for key in keys {
            self.insert(key, index);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_ignores_case_punctuation_and_spacing() {
        assert_eq!(
            normalize("  Does the Response, cite   SMITH (2020)?"),
            "does the response cite smith 2020"
        );
        assert_eq!(
            exact_key(&normalize("A b.")),
            exact_key(&normalize("a   B"))
        );
    }

    #[test]
    fn near_duplicates_are_caught_and_different_texts_kept() {
        let base = "what are the main approaches to fairness in recommender systems and how do they differ in their treatment of providers and consumers over time";
        let near = format!("{base} today");
        let other = "how do wearable gait sensors compare with clinical scales for tracking parkinson disease progression in daily life at home";
        let [a, b, c] = [base, near.as_str(), other].map(|t| signature(&normalize(t)));
        assert!(similarity(&a, &b) > 0.75, "{}", similarity(&a, &b));
        assert!(similarity(&a, &c) < 0.2);
        let mut detector = NearDuplicates::new(0.8);
        assert!(!detector.is_duplicate(&normalize(base)));
        assert!(!detector.is_duplicate(&normalize(other)));
        assert!(detector.is_duplicate(&normalize(&near)));
        assert!(
            detector.is_duplicate(&normalize(base)),
            "an exact copy is also near"
        );
        let mut strict = NearDuplicates::new(1.01);
        assert!(!strict.is_duplicate(&normalize(base)));
        assert!(
            !strict.is_duplicate(&normalize(&near)),
            "nothing is a duplicate above similarity 1"
        );
    }
}
