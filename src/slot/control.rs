//! The `bootloader_control` record (libboot_control, `boot_control_definition.h`): 32
//! little-endian bytes at offset 2048 of `misc`, right after the 2 KiB `bootloader_message`.
//!
//! | bytes | field |
//! |-------|-------|
//! | 0..4  | `slot_suffix`, NUL-terminated (`"_a"` from the HAL, `"a"` from U-Boot) |
//! | 4..8  | `magic` = 0x42414342 |
//! | 8     | `version` = 1 |
//! | 9     | bits 0-2 `nb_slot`, bits 3-5 `recovery_tries_remaining`, bits 6-7 `merge_status` low |
//! | 10    | bit 0 `merge_status` high, bits 1-7 reserved |
//! | 11    | reserved |
//! | 12..20| `slot_info[4]`, 2 bytes each (see [`SlotMetadata`]) |
//! | 20..28| reserved |
//! | 28..32| `crc32_le`: CRC-32 (zlib) of bytes 0..28 |
//!
//! Bits this module does not interpret are kept as read and written back unchanged, so a
//! bootloader's private use of them survives an update.

use super::Slot;

/// Where the record lives in `misc`.
pub const MISC_OFFSET: u64 = 2048;
/// The record's size in bytes.
pub const RECORD_LEN: usize = 32;
/// `BOOT_CTRL_MAGIC`, "BCAB" read as a little-endian u32.
pub const MAGIC: u32 = 0x4241_4342;
/// `BOOT_CTRL_VERSION`.
pub const VERSION: u8 = 1;
/// Slot entries the record has room for; `nb_slot` says how many are in use.
pub const MAX_SLOTS: usize = 4;

const CRC_OFFSET: usize = 28;

/// Why a 32-byte record is not a usable `bootloader_control`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Corrupt {
    /// The checksum does not match: never written, damaged, or a write was torn.
    #[error(
        "bootloader_control CRC-32 mismatch (stored {stored:#010x}, computed {computed:#010x})"
    )]
    Crc {
        /// The checksum stored in the record.
        stored: u32,
        /// The checksum of its bytes.
        computed: u32,
    },
    /// The checksum matches but the record is not libboot_control's.
    #[error("bootloader_control magic {0:#010x} is not {MAGIC:#010x}")]
    Magic(u32),
    /// A layout this module does not know.
    #[error("bootloader_control version {0} is not {VERSION}")]
    Version(u8),
}

/// One slot's entry (`slot_metadata`), two bytes: byte 0 bits 0-3 `priority`, bits 4-6
/// `tries_remaining`, bit 7 `successful_boot`; byte 1 bit 0 `verity_corrupted`, bits 1-7
/// reserved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotMetadata {
    /// 15 highest, 1 lowest, 0 never boot. Four bits.
    pub(super) priority: u8,
    /// Boot attempts left; the bootloader decrements it on each boot of an unsuccessful slot.
    /// Three bits.
    pub(super) tries_remaining: u8,
    pub(super) successful_boot: bool,
    /// Set by the bootloader when dm-verity found corruption on the slot.
    pub(super) verity_corrupted: bool,
    /// Byte 1 bits 1-7, kept as read.
    pub(super) reserved: u8,
}

impl SlotMetadata {
    /// 15 highest, 1 lowest, 0: never boot.
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// Boot attempts left before the bootloader gives up on the slot.
    pub fn tries_remaining(&self) -> u8 {
        self.tries_remaining
    }

    /// Whether the slot booted successfully (`markBootSuccessful`).
    pub fn successful_boot(&self) -> bool {
        self.successful_boot
    }

    /// Set by the bootloader when dm-verity found corruption on the slot.
    pub fn verity_corrupted(&self) -> bool {
        self.verity_corrupted
    }

    fn decode(bytes: [u8; 2]) -> SlotMetadata {
        SlotMetadata {
            priority: bytes[0] & 0x0f,
            tries_remaining: (bytes[0] >> 4) & 0x07,
            successful_boot: bytes[0] & 0x80 != 0,
            verity_corrupted: bytes[1] & 0x01 != 0,
            reserved: bytes[1] >> 1,
        }
    }

    fn encode(&self) -> [u8; 2] {
        [
            (self.priority & 0x0f)
                | ((self.tries_remaining & 0x07) << 4)
                | (u8::from(self.successful_boot) << 7),
            u8::from(self.verity_corrupted) | (self.reserved << 1),
        ]
    }
}

/// A parsed `bootloader_control` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootloaderControl {
    pub(crate) slot_suffix: [u8; 4],
    /// Three bits.
    pub(super) nb_slot: u8,
    /// Three bits.
    pub(super) recovery_tries_remaining: u8,
    /// Three bits; libboot_control keeps the live merge status at misc + 32 KiB instead.
    pub(super) merge_status: u8,
    /// Byte 10 bits 1-7, kept as read.
    pub(super) reserved_bits: u8,
    /// Byte 11, kept as read.
    pub(super) reserved0: u8,
    pub(super) slot_info: [SlotMetadata; MAX_SLOTS],
    /// Bytes 20..28, kept as read.
    pub(super) reserved1: [u8; 8],
}

impl BootloaderControl {
    /// Parses a record, checking CRC first (so a torn write reads as [`Corrupt::Crc`]), then
    /// magic and version.
    pub fn parse(bytes: &[u8; RECORD_LEN]) -> Result<BootloaderControl, Corrupt> {
        let stored = u32::from_le_bytes(sub::<4>(bytes, CRC_OFFSET));
        let computed = crc32fast::hash(&bytes[..CRC_OFFSET]);
        if stored != computed {
            return Err(Corrupt::Crc { stored, computed });
        }
        let magic = u32::from_le_bytes(sub::<4>(bytes, 4));
        if magic != MAGIC {
            return Err(Corrupt::Magic(magic));
        }
        if bytes[8] != VERSION {
            return Err(Corrupt::Version(bytes[8]));
        }
        let mut slot_info = [SlotMetadata::default(); MAX_SLOTS];
        for (i, entry) in slot_info.iter_mut().enumerate() {
            *entry = SlotMetadata::decode(sub::<2>(bytes, 12 + 2 * i));
        }
        Ok(BootloaderControl {
            slot_suffix: sub::<4>(bytes, 0),
            nb_slot: bytes[9] & 0x07,
            recovery_tries_remaining: (bytes[9] >> 3) & 0x07,
            merge_status: (bytes[9] >> 6) | ((bytes[10] & 0x01) << 2),
            reserved_bits: bytes[10] >> 1,
            reserved0: bytes[11],
            slot_info,
            reserved1: sub::<8>(bytes, 20),
        })
    }

    /// The record's bytes, with a fresh CRC.
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        out[0..4].copy_from_slice(&self.slot_suffix);
        out[4..8].copy_from_slice(&MAGIC.to_le_bytes());
        out[8] = VERSION;
        out[9] = (self.nb_slot & 0x07)
            | ((self.recovery_tries_remaining & 0x07) << 3)
            | ((self.merge_status & 0x03) << 6);
        out[10] = ((self.merge_status >> 2) & 0x01) | (self.reserved_bits << 1);
        out[11] = self.reserved0;
        for (i, entry) in self.slot_info.iter().enumerate() {
            out[12 + 2 * i..14 + 2 * i].copy_from_slice(&entry.encode());
        }
        out[20..28].copy_from_slice(&self.reserved1);
        let crc = crc32fast::hash(&out[..CRC_OFFSET]);
        out[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// The record the boot HAL writes when it finds none valid (`InitDefaultBootloaderControl`):
    /// both slots at priority 7 with 7 tries, the running slot successful, everything else zero.
    /// The HAL assumes the running slot is fine because it did boot.
    pub fn new_default(current: Slot) -> BootloaderControl {
        let mut slot_info = [SlotMetadata::default(); MAX_SLOTS];
        for slot in Slot::ALL {
            slot_info[slot.index()] = SlotMetadata {
                priority: super::rules::DEFAULT_PRIORITY,
                tries_remaining: super::rules::DEFAULT_TRIES,
                successful_boot: slot == current,
                verity_corrupted: false,
                reserved: 0,
            };
        }
        let mut slot_suffix = [0u8; 4];
        slot_suffix[..2].copy_from_slice(current.suffix().as_bytes());
        BootloaderControl {
            slot_suffix,
            // The HAL probes for boot_a, boot_b, ...; abupdate only runs on A/B devices.
            nb_slot: Slot::ALL.len() as u8,
            recovery_tries_remaining: 0,
            merge_status: 0,
            reserved_bits: 0,
            reserved0: 0,
            slot_info,
            reserved1: [0; 8],
        }
    }

    /// The slot named by `slot_suffix`, which the bootloader sets to the slot it booted (U-Boot
    /// writes `"a"`, the HAL `"_a"`); `None` if it names no A/B slot.
    pub fn suffix_slot(&self) -> Option<Slot> {
        let len = self.slot_suffix.iter().position(|&b| b == 0).unwrap_or(4);
        let text = std::str::from_utf8(&self.slot_suffix[..len]).ok()?;
        text.parse().ok()
    }

    /// Slots in use, as the record says (0–7, though only 4 have entries).
    pub fn nb_slot(&self) -> u8 {
        self.nb_slot
    }

    /// `recovery_tries_remaining`: attempts left to boot recovery.
    pub fn recovery_tries_remaining(&self) -> u8 {
        self.recovery_tries_remaining
    }

    /// `merge_status`: the Virtual A/B merge status (`MergeStatus` of the boot HAL).
    pub fn merge_status(&self) -> u8 {
        self.merge_status
    }

    /// The entry of `slot`.
    pub fn slot(&self, slot: Slot) -> &SlotMetadata {
        &self.slot_info[slot.index()]
    }
}

/// `N` bytes of `bytes` from `at`; every caller's range lies inside the 32-byte record.
fn sub<const N: usize>(bytes: &[u8; RECORD_LEN], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record as libboot_control lays it out (the table at the top of this file): current
    /// `_a`, 2 slots, a = prio 7 / tries 7 / successful, b = prio 7 / tries 7, CRC-32 last.
    pub(in crate::slot) const VECTOR: &str =
        "5f6100004243414201020000f7007700000000000000000000000000aa83a82e";

    pub(crate) fn vector() -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&VECTOR[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    /// Recomputes the CRC of hand-edited bytes.
    pub(crate) fn reseal(bytes: &mut [u8; RECORD_LEN]) {
        let crc = crc32fast::hash(&bytes[..CRC_OFFSET]);
        bytes[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn test_vector_round_trips() {
        let bytes = vector();
        let rec = BootloaderControl::parse(&bytes).unwrap();
        assert_eq!(rec.suffix_slot(), Some(Slot::A));
        assert_eq!(rec.nb_slot(), 2);
        let a = rec.slot(Slot::A);
        assert_eq!(
            (a.priority(), a.tries_remaining(), a.successful_boot()),
            (7, 7, true)
        );
        let b = rec.slot(Slot::B);
        assert_eq!(
            (b.priority(), b.tries_remaining(), b.successful_boot()),
            (7, 7, false)
        );
        assert_eq!(rec.encode(), bytes);
        assert_eq!(BootloaderControl::new_default(Slot::A).encode(), bytes);
    }

    #[test]
    fn default_for_b() {
        let rec = BootloaderControl::new_default(Slot::B);
        let bytes = rec.encode();
        assert_eq!(&bytes[..4], b"_b\0\0");
        assert_eq!(&bytes[12..20], &[0x77, 0, 0xf7, 0, 0, 0, 0, 0]);
        assert_eq!(BootloaderControl::parse(&bytes), Ok(rec));
    }

    #[test]
    fn every_bit_survives_a_round_trip() {
        // Set every field and reserved bit to something non-zero, then check nothing is lost.
        let mut bytes = vector();
        bytes[2] = 0x7e;
        bytes[9] = 0xff;
        bytes[10] = 0xff;
        bytes[11] = 0x5a;
        for (i, byte) in bytes.iter_mut().enumerate().take(28).skip(12) {
            *byte = 0xa5 ^ i as u8;
        }
        reseal(&mut bytes);
        let rec = BootloaderControl::parse(&bytes).unwrap();
        assert_eq!(rec.merge_status(), 7);
        assert_eq!(rec.recovery_tries_remaining(), 7);
        assert_eq!(rec.nb_slot(), 7);
        assert_eq!(rec.encode(), bytes);
    }

    #[test]
    fn merge_status_straddles_bytes_9_and_10() {
        let mut bytes = vector();
        bytes[9] = 0x02 | 0x40; // nb_slot 2, merge_status bit 0
        bytes[10] = 0x01; // merge_status bit 2
        reseal(&mut bytes);
        let rec = BootloaderControl::parse(&bytes).unwrap();
        assert_eq!((rec.nb_slot(), rec.merge_status()), (2, 0b101));
    }

    #[test]
    fn any_flipped_bit_fails_the_crc() {
        let good = vector();
        for byte in 0..RECORD_LEN {
            for bit in 0..8 {
                let mut bad = good;
                bad[byte] ^= 1 << bit;
                let got = BootloaderControl::parse(&bad);
                assert!(
                    matches!(got, Err(Corrupt::Crc { .. })),
                    "byte {byte} bit {bit}: {got:?}"
                );
            }
        }
    }

    #[test]
    fn zeroed_misc_is_corrupt() {
        let got = BootloaderControl::parse(&[0; RECORD_LEN]);
        assert_eq!(
            got,
            Err(Corrupt::Crc {
                stored: 0,
                computed: crc32fast::hash(&[0; 28])
            })
        );
    }

    #[test]
    fn foreign_magic_and_version_are_refused() {
        let mut bytes = vector();
        bytes[4..8].copy_from_slice(b"\0AB0");
        reseal(&mut bytes);
        assert_eq!(
            BootloaderControl::parse(&bytes),
            Err(Corrupt::Magic(u32::from_le_bytes(*b"\0AB0")))
        );
        let mut bytes = vector();
        bytes[8] = 2;
        reseal(&mut bytes);
        assert_eq!(BootloaderControl::parse(&bytes), Err(Corrupt::Version(2)));
    }
}
