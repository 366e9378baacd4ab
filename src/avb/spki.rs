//! The DER encoding of an RSA `SubjectPublicKeyInfo`, the one ASN.1 structure we write (parsing
//! goes through x509-parser).
//!
//! ```text
//! SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }
//! AlgorithmIdentifier  ::= SEQUENCE { rsaEncryption OID 1.2.840.113549.1.1.1, NULL }
//! RSAPublicKey         ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }  -- in the BIT STRING
//! ```

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
/// OID 1.2.840.113549.1.1.1 followed by NULL parameters.
const RSA_ALGORITHM_IDENTIFIER: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

/// DER `SubjectPublicKeyInfo` for modulus `n` and exponent `e` (both big-endian, unsigned).
pub(crate) fn rsa_spki_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut rsa_key = integer(n);
    rsa_key.extend(integer(e));
    let mut bits = vec![0u8]; // no unused bits
    bits.extend(tlv(SEQUENCE, &rsa_key));
    let mut body = RSA_ALGORITHM_IDENTIFIER.to_vec();
    body.extend(tlv(BIT_STRING, &bits));
    tlv(SEQUENCE, &body)
}

/// A non-negative INTEGER: minimal, with a 0x00 prefix when the top bit is set.
fn integer(value: &[u8]) -> Vec<u8> {
    let first = value.iter().position(|&b| b != 0).unwrap_or(value.len());
    let mut content = Vec::with_capacity(value.len() - first + 1);
    match value.get(first) {
        None => content.push(0),
        Some(top) if top & 0x80 != 0 => content.push(0),
        Some(_) => {}
    }
    content.extend_from_slice(&value[first..]);
    tlv(INTEGER, &content)
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let first = bytes
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(bytes.len() - 1);
        out.push(0x80 | (bytes.len() - first) as u8);
        out.extend_from_slice(&bytes[first..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_lengths_and_integers_minimally() {
        assert_eq!(tlv(0x04, &[1, 2]), [0x04, 2, 1, 2]);
        assert_eq!(&tlv(0x04, &[0; 0x80])[..3], [0x04, 0x81, 0x80]);
        assert_eq!(&tlv(0x04, &[0; 0x1234])[..4], [0x04, 0x82, 0x12, 0x34]);
        assert_eq!(integer(&[0, 0, 1, 0, 1]), [0x02, 3, 1, 0, 1]);
        assert_eq!(integer(&[0x80]), [0x02, 2, 0, 0x80]);
        assert_eq!(integer(&[]), [0x02, 1, 0]);
    }
}
