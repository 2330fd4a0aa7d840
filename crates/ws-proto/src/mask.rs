//! Payload masking (RFC 6455 §5.3).
//!
//! > Octet i of the transformed data ("transformed-octet-i") is the XOR of octet i of the
//! > original data ("original-octet-i") with octet at index i modulo 4 of the masking key.
//!
//! Masking and unmasking are the same operation. [`apply_mask`] works a machine word at a time
//! in safe code (the compiler turns the loop into SIMD where the target has it) and takes an
//! `offset` so that a payload that arrives in pieces can be unmasked piece by piece in place.

/// XORs `buf` with the masking `key`, as if `buf` started at byte `offset` of the payload.
///
/// Returns the offset of the byte after `buf`, modulo 4, to pass to the next call for the
/// same payload.
///
/// ```
/// use ws_proto::apply_mask;
///
/// // RFC 6455 §5.7: a masked "Hello".
/// let key = [0x37, 0xfa, 0x21, 0x3d];
/// let mut data = *b"Hello";
/// let next = apply_mask(&mut data[..2], key, 0);
/// apply_mask(&mut data[2..], key, next);
/// assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// ```
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    let offset = offset & 3;
    // Rotate the key so that its first byte lines up with `buf[0]`.
    let rotated =
        [key[offset], key[(offset + 1) & 3], key[(offset + 2) & 3], key[(offset + 3) & 3]];
    let k32 = u32::from_ne_bytes(rotated);
    let k64 = (u64::from(k32) << 32) | u64::from(k32);
    let k64_bytes = k64.to_ne_bytes();

    // Eight words per step: large enough for the compiler to vectorise, small enough that the
    // tail loop stays short.
    let mut blocks = buf.chunks_exact_mut(64);
    for block in &mut blocks {
        for word in block.chunks_exact_mut(8) {
            let v = u64::from_ne_bytes(word.try_into().expect("chunk of 8")) ^ k64;
            word.copy_from_slice(&v.to_ne_bytes());
        }
    }
    let rest = blocks.into_remainder();
    let mut words = rest.chunks_exact_mut(8);
    for word in &mut words {
        let v = u64::from_ne_bytes(word.try_into().expect("chunk of 8")) ^ k64;
        word.copy_from_slice(&v.to_ne_bytes());
    }
    // At most seven bytes left: four at once, then one at a time. The words before were
    // whole multiples of four bytes, so the key still starts at `k64_bytes[0]`.
    let mut rest = words.into_remainder();
    if rest.len() >= 4 {
        let (four, tail) = rest.split_at_mut(4);
        let v = u32::from_ne_bytes(four.try_into().expect("four bytes")) ^ k32;
        four.copy_from_slice(&v.to_ne_bytes());
        rest = tail;
    }
    for (i, byte) in rest.iter_mut().enumerate() {
        *byte ^= k64_bytes[i];
    }
    (offset + buf.len()) & 3
}

/// The byte-at-a-time reference implementation of masking, kept for tests and benchmarks.
#[doc(hidden)]
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(offset + i) & 3];
    }
    (offset + buf.len()) & 3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + 7) as u8).collect()
    }

    #[test]
    fn matches_reference_at_every_length_alignment_and_offset() {
        let key = [0x12, 0x34, 0x56, 0x78];
        let backing = pattern(300);
        for start in 0..16 {
            for len in 0..(300 - start) {
                for offset in 0..4 {
                    let mut fast = backing.clone();
                    let mut slow = backing.clone();
                    let a = apply_mask(&mut fast[start..start + len], key, offset);
                    let b = apply_mask_bytewise(&mut slow[start..start + len], key, offset);
                    assert_eq!(a, b);
                    assert_eq!(fast, slow, "start {start} len {len} offset {offset}");
                }
            }
        }
    }

    #[test]
    fn masking_twice_is_identity() {
        let key = [0xde, 0xad, 0xbe, 0xef];
        let original = pattern(1000);
        let mut data = original.clone();
        apply_mask(&mut data, key, 1);
        assert_ne!(data, original);
        apply_mask(&mut data, key, 1);
        assert_eq!(data, original);
    }

    #[test]
    fn piecewise_equals_whole() {
        let key = [1, 2, 3, 4];
        let original = pattern(777);
        let mut whole = original.clone();
        apply_mask(&mut whole, key, 0);
        for split in [1, 2, 3, 5, 8, 63, 64, 65, 500] {
            let mut parts = original.clone();
            let (a, b) = parts.split_at_mut(split);
            let next = apply_mask(a, key, 0);
            apply_mask(b, key, next);
            assert_eq!(parts, whole, "split at {split}");
        }
    }
}
