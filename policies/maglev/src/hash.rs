//! xxHash64 (Yann Collet's XXH64), written out here so that the hash of a key can never
//! change under the policy's feet.
//!
//! Why not `std::hash::DefaultHasher`: its algorithm is explicitly unspecified and may
//! change between Rust releases, which would silently move every key to another backend
//! (and make two proxies built with different toolchains disagree). Why xxHash64 rather
//! than FNV-1a: it is what Envoy's Maglev and ring hash use by default, it mixes short keys
//! (user ids, IPs) far better than FNV-1a's byte-at-a-time multiply, and it is 60 lines
//! with no dependency. The tests pin its output on the reference implementation's values.

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

fn round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn merge(acc: u64, val: u64) -> u64 {
    (acc ^ round(0, val)).wrapping_mul(P1).wrapping_add(P4)
}

fn read64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn read32(b: &[u8]) -> u64 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u64::from(u32::from_le_bytes(a))
}

/// XXH64 of `data` with `seed`, bit-for-bit the reference implementation's.
pub fn xxh64(data: &[u8], seed: u64) -> u64 {
    let mut rest = data;
    let mut h = if data.len() >= 32 {
        let mut v = [
            seed.wrapping_add(P1).wrapping_add(P2),
            seed.wrapping_add(P2),
            seed,
            seed.wrapping_sub(P1),
        ];
        while rest.len() >= 32 {
            for (i, lane) in v.iter_mut().enumerate() {
                *lane = round(*lane, read64(&rest[i * 8..]));
            }
            rest = &rest[32..];
        }
        let mut h = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        for lane in v {
            h = merge(h, lane);
        }
        h
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(data.len() as u64);
    while rest.len() >= 8 {
        h ^= round(0, read64(rest));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        h ^= read32(rest).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = &rest[4..];
    }
    for &byte in rest {
        h ^= u64::from(byte).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

/// A second, independent 64-bit value from a hash (the splitmix64 finaliser,
/// `common::mix`): the stride of a key's walk, so that it does not correlate with the slot
/// the hash picked.
pub fn remix(z: u64) -> u64 {
    common::mix(z)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh64_matches_the_reference_implementation() {
        // Values from the reference C library (python-xxhash 4.1.0): these pin the hash,
        // so a key keeps its backend across releases of this policy and of Rust.
        assert_eq!(xxh64(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxh64(b"abc", 0), 0x44BC_2CF5_AD77_0999);
        assert_eq!(xxh64(b"switchyard", 0), 0xCE1D_1455_A685_200C);
        assert_eq!(xxh64(b"switchyard", 1), 0x2AA3_97D1_14C2_C02E);
        // 40 bytes: one 32-byte stripe, then 8 bytes.
        assert_eq!(
            xxh64(b"0123456789abcdef0123456789abcdefXYZ12345", 0),
            0x2206_B063_B068_69C8
        );
    }
}
