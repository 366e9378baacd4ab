//! Arithmetic in GF(2^8) with the field polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d), the field
//! libfec, the kernel's dm-verity FEC and `reedsolo` use, and the Reed-Solomon generator
//! polynomial for first consecutive root 0 and primitive element step 1.

/// The field polynomial.
const POLY: u16 = 0x11d;

/// `EXP[i] = α^i` for α = 2, doubled in length so that `EXP[log a + log b]` needs no modulo.
static EXP: [u8; 512] = exp_table();
/// `LOG[α^i] = i`; `LOG[0]` is unused.
static LOG: [u8; 256] = log_table();

const fn exp_table() -> [u8; 512] {
    let mut table = [0u8; 512];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 512 {
        table[i] = x as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= POLY;
        }
        i += 1;
    }
    table
}

const fn log_table() -> [u8; 256] {
    let exp = exp_table();
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 255 {
        table[exp[i] as usize] = i as u8;
        i += 1;
    }
    table
}

pub(super) fn mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        return 0;
    }
    EXP[usize::from(LOG[usize::from(a)]) + usize::from(LOG[usize::from(b)])]
}

/// `2a`, i.e. `α·a`, without tables: branch-free so loops over it vectorize.
#[inline(always)]
pub(super) fn double(a: u8) -> u8 {
    let overflow = ((a as i8) >> 7) as u8;
    (a << 1) ^ (overflow & (POLY as u8))
}

/// The monic generator polynomial `g(x) = (x - α^0)(x - α^1)...(x - α^(roots-1))`, coefficients
/// in ascending powers of x: `g[roots] == 1`.
pub(super) fn generator(roots: usize) -> Vec<u8> {
    let mut g = vec![1u8];
    for &root in &EXP[..roots] {
        // Multiply by (x + α^i); subtraction is addition in characteristic 2.
        let mut next = vec![0u8; g.len() + 1];
        for (k, &c) in g.iter().enumerate() {
            next[k + 1] ^= c;
            next[k] ^= mul(c, root);
        }
        g = next;
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_is_a_field() {
        assert_eq!(EXP[255], 1, "α has order 255");
        for a in 1..=255u8 {
            let inv = EXP[255 - usize::from(LOG[usize::from(a)])];
            assert_eq!(mul(a, inv), 1, "{a}");
        }
        assert_eq!(mul(0x80, 2), 0x1d);
        for a in 0..=255u8 {
            assert_eq!(double(a), mul(a, 2), "{a}");
        }
        assert_eq!(mul(3, 7), 9);
    }

    #[test]
    fn generator_has_the_expected_roots() {
        for roots in [2usize, 8, 24] {
            let g = generator(roots);
            assert_eq!((g.len(), g[roots]), (roots + 1, 1));
            for (i, &root) in EXP[..roots].iter().enumerate() {
                // Horner evaluation at α^i.
                let value = g.iter().rev().fold(0u8, |acc, &c| mul(acc, root) ^ c);
                assert_eq!(value, 0, "roots {roots}: α^{i}");
            }
        }
        // g(x) = (x + 1)(x + 2) = x^2 + 3x + 2.
        assert_eq!(generator(2), vec![2, 3, 1]);
    }
}
