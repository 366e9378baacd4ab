//! The device-mapper ioctl wire format (`linux/dm-ioctl.h`, interface version 4), with no I/O.
//!
//! Every DM ioctl takes one buffer: a `struct dm_ioctl` header followed by command data
//! (`data_start` is where that data begins, `data_size` the whole buffer's length). This module
//! builds such buffers and parses the kernel's replies, checking every offset the kernel hands
//! back against the buffer before using it; `super::ioctl` only passes the bytes to the kernel.

use crate::err;
use crate::error::Result;

/// `DM_NAME_LEN`, `DM_UUID_LEN`, `DM_MAX_TYPE_NAME`: sizes of the NUL-terminated strings.
pub const NAME_LEN: usize = 128;
/// `DM_UUID_LEN`.
pub const UUID_LEN: usize = 129;
/// `DM_MAX_TYPE_NAME`.
pub const TYPE_NAME_LEN: usize = 16;

/// The interface version we speak. The kernel accepts a request whose major equals its own and
/// whose minor is not newer; 4.0.0 is what every kernel since 2.6 serves (Android's libdm asks
/// for the same).
pub const VERSION: [u32; 3] = [4, 0, 0];

/// Status bits of `dm_ioctl.flags` that we use.
pub const READONLY_FLAG: u32 = 1 << 0;
/// `DM_SUSPEND_FLAG`: the device is (to be) suspended.
pub const SUSPEND_FLAG: u32 = 1 << 1;
/// `DM_STATUS_TABLE_FLAG`: DM_TABLE_STATUS returns the table lines, not the targets' status.
pub const STATUS_TABLE_FLAG: u32 = 1 << 4;
/// `DM_ACTIVE_PRESENT_FLAG`: the device has a live table.
pub const ACTIVE_PRESENT_FLAG: u32 = 1 << 5;
/// `DM_BUFFER_FULL_FLAG`: the reply did not fit the buffer.
pub const BUFFER_FULL_FLAG: u32 = 1 << 8;

/// `struct dm_ioctl`, exactly as the kernel lays it out (312 bytes). Only its size and field
/// offsets matter here: it names the ioctl request codes (`_IOWR(0xfd, cmd, struct dm_ioctl)`),
/// while the bytes are written and read field by field in [`Request`] and [`Reply`].
#[repr(C)]
pub struct DmIoctl {
    /// Interface version: requested on the way in, the kernel's on the way out.
    pub version: [u32; 3],
    /// Size of the whole buffer: header plus data.
    pub data_size: u32,
    /// Offset of the command data from the start of the buffer.
    pub data_start: u32,
    /// Number of `dm_target_spec`s in the data.
    pub target_count: u32,
    /// Openers of the device (out).
    pub open_count: i32,
    /// `DM_*_FLAG` bits.
    pub flags: u32,
    /// Event counter (in and out).
    pub event_nr: u32,
    /// Alignment padding.
    pub padding: u32,
    /// The device number (`huge_encode_dev`), see [`DevNum`].
    pub dev: u64,
    /// Device name, NUL-terminated.
    pub name: [u8; NAME_LEN],
    /// Device uuid, NUL-terminated.
    pub uuid: [u8; UUID_LEN],
    /// Padding to the 8-byte aligned data.
    pub data: [u8; 7],
}

/// `sizeof(struct dm_ioctl)`; command data starts here (it is 8-byte aligned).
pub const HEADER_SIZE: usize = std::mem::size_of::<DmIoctl>();

// Field offsets inside the header.
const OFF_DATA_SIZE: usize = 12;
const OFF_DATA_START: usize = 16;
const OFF_TARGET_COUNT: usize = 20;
const OFF_OPEN_COUNT: usize = 24;
const OFF_FLAGS: usize = 28;
const OFF_DEV: usize = 40;
const OFF_NAME: usize = 48;
const OFF_UUID: usize = OFF_NAME + NAME_LEN;

/// `sizeof(struct dm_target_spec)`: sector_start, length, status, next, target_type[16].
const SPEC_SIZE: usize = 40;
/// `offsetof(struct dm_name_list, name)`: dev, next.
const NAME_LIST_HEADER: usize = 12;
/// `struct dm_target_versions` before its name: `next` and `version[3]`.
const VERSIONS_HEADER: usize = 16;

/// A block device number as the kernel's `huge_encode_dev` packs it into `dm_ioctl.dev` and
/// `dm_name_list.dev` (and as glibc's `makedev` does for `st_rdev`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DevNum {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl DevNum {
    /// Unpacks `huge_encode_dev`'s encoding.
    pub fn decode(dev: u64) -> DevNum {
        DevNum {
            major: (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)) as u32,
            minor: (((dev >> 12) & 0xffff_ff00) | (dev & 0xff)) as u32,
        }
    }

    /// Packs as `huge_encode_dev` does.
    pub fn encode(self) -> u64 {
        let (major, minor) = (u64::from(self.major), u64::from(self.minor));
        ((major & 0xffff_f000) << 32)
            | ((major & 0xfff) << 8)
            | ((minor & 0xffff_ff00) << 12)
            | (minor & 0xff)
    }
}

impl std::fmt::Display for DevNum {
    /// `major:minor`, the form a table line names a device by.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// One line of a table: `length` sectors from `start`, handled by target `kind` with `params`
/// (`linear 7:0 2048`, `zero`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetLine {
    /// First sector.
    pub start: u64,
    /// Number of sectors.
    pub length: u64,
    /// Target type (`linear`, `zero`, `verity`, ...).
    pub kind: String,
    /// Target parameters, as in a `dmsetup` table line.
    pub params: String,
}

/// A request buffer: header plus command data.
#[derive(Debug)]
pub struct Request {
    bytes: Vec<u8>,
}

impl Request {
    /// A request naming device `name` (empty for commands on no device), with `data` after the
    /// header and room for at least `capacity` bytes of reply data.
    pub fn new(name: &str, flags: u32, data: &[u8], capacity: usize) -> Result<Request> {
        let room = data.len().max(capacity);
        let size = HEADER_SIZE
            .checked_add(room)
            .and_then(|s| s.checked_next_multiple_of(8))
            .filter(|&s| u32::try_from(s).is_ok())
            .ok_or_else(|| {
                err!(
                    DeviceError,
                    "device-mapper request of {room} bytes is too large"
                )
            })?;
        let mut bytes = vec![0u8; size];
        for (i, v) in VERSION.iter().enumerate() {
            put_u32(&mut bytes, 4 * i, *v);
        }
        put_u32(&mut bytes, OFF_DATA_SIZE, size as u32);
        put_u32(&mut bytes, OFF_DATA_START, HEADER_SIZE as u32);
        put_u32(&mut bytes, OFF_FLAGS, flags);
        put_str(
            &mut bytes[OFF_NAME..OFF_NAME + NAME_LEN],
            name,
            "device name",
        )?;
        bytes[HEADER_SIZE..HEADER_SIZE + data.len()].copy_from_slice(data);
        Ok(Request { bytes })
    }

    /// Sets `target_count` (DM_TABLE_LOAD).
    pub fn with_targets(mut self, count: u32) -> Request {
        put_u32(&mut self.bytes, OFF_TARGET_COUNT, count);
        self
    }

    /// Sets the uuid (DM_DEV_CREATE).
    pub fn with_uuid(mut self, uuid: &str) -> Result<Request> {
        put_str(
            &mut self.bytes[OFF_UUID..OFF_UUID + UUID_LEN],
            uuid,
            "device uuid",
        )?;
        Ok(self)
    }

    /// The buffer as 8-byte words, the alignment the kernel's structures need.
    pub fn to_words(&self) -> Vec<u64> {
        self.bytes
            .chunks_exact(8)
            .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or_default()))
            .collect()
    }
}

/// The kernel's reply: the same buffer after the ioctl.
#[derive(Debug)]
pub struct Reply {
    bytes: Vec<u8>,
}

impl Reply {
    /// Takes the buffer back from the 8-byte words the ioctl wrote.
    pub fn from_words(words: &[u64]) -> Reply {
        Reply {
            bytes: words.iter().flat_map(|w| w.to_ne_bytes()).collect(),
        }
    }

    /// `version`: the kernel's interface version.
    pub fn version(&self) -> [u32; 3] {
        [
            get_u32(&self.bytes, 0),
            get_u32(&self.bytes, 4),
            get_u32(&self.bytes, 8),
        ]
    }
    /// `flags`: the reply's `DM_*_FLAG` bits.
    pub fn flags(&self) -> u32 {
        get_u32(&self.bytes, OFF_FLAGS)
    }
    /// `target_count`: table lines in the reply (DM_TABLE_STATUS).
    pub fn target_count(&self) -> u32 {
        get_u32(&self.bytes, OFF_TARGET_COUNT)
    }
    /// `open_count`: how many hold the device open.
    pub fn open_count(&self) -> i32 {
        get_u32(&self.bytes, OFF_OPEN_COUNT) as i32
    }
    /// `dev`: the device's number.
    pub fn dev(&self) -> DevNum {
        DevNum::decode(get_u64(&self.bytes, OFF_DEV))
    }
    /// `name`: the device's name.
    pub fn name(&self) -> String {
        c_str(&self.bytes[OFF_NAME..OFF_NAME + NAME_LEN])
    }
    /// `uuid`: the device's uuid (empty when it has none).
    pub fn uuid(&self) -> String {
        c_str(&self.bytes[OFF_UUID..OFF_UUID + UUID_LEN])
    }
    /// The kernel could not fit its answer: ask again with a larger buffer.
    pub fn buffer_full(&self) -> bool {
        self.flags() & BUFFER_FULL_FLAG != 0
    }

    /// The reply data: from `data_start` to `data_size`, both checked against the buffer.
    fn data(&self) -> Result<&[u8]> {
        let start = get_u32(&self.bytes, OFF_DATA_START) as usize;
        let end = get_u32(&self.bytes, OFF_DATA_SIZE) as usize;
        if start < HEADER_SIZE || start > end || end > self.bytes.len() {
            return Err(err!(
                DeviceError,
                "device-mapper reply data {start}..{end} outside its {}-byte buffer",
                self.bytes.len()
            ));
        }
        Ok(&self.bytes[start..end])
    }

    /// DM_LIST_DEVICES: every device's name and number.
    pub fn name_list(&self) -> Result<Vec<(String, DevNum)>> {
        let data = self.data()?;
        let mut out = Vec::new();
        let mut at = 0usize;
        loop {
            let record = data.get(at..).unwrap_or_default();
            if record.len() < NAME_LIST_HEADER {
                // An empty list has no record at all (or one with dev 0).
                if out.is_empty() {
                    return Ok(out);
                }
                return Err(err!(
                    DeviceError,
                    "device-mapper name list truncated at {at}"
                ));
            }
            let dev = get_u64(record, 0);
            if dev == 0 && out.is_empty() {
                return Ok(out);
            }
            let next = get_u32(record, 8) as usize;
            let name = terminated(&record[NAME_LIST_HEADER..], "device name")?;
            out.push((name, DevNum::decode(dev)));
            if next == 0 {
                return Ok(out);
            }
            at = at
                .checked_add(next)
                .ok_or_else(|| err!(DeviceError, "device-mapper name list offset overflows"))?;
        }
    }

    /// DM_LIST_VERSIONS: the target types the kernel has, with their versions. Each record is
    /// `struct dm_target_versions` (`next`, `version[3]`, the NUL-terminated name), `next`
    /// the distance to the following record, 0 on the last (`linux/dm-ioctl.h`; libdm's
    /// `DeviceMapper::GetAvailableTargets` walks it the same way).
    pub fn target_versions(&self) -> Result<Vec<(String, [u32; 3])>> {
        let data = self.data()?;
        let mut out = Vec::new();
        let mut at = 0usize;
        loop {
            let record = data
                .get(at..)
                .filter(|r| r.len() > VERSIONS_HEADER)
                .ok_or_else(|| err!(DeviceError, "device-mapper target list truncated at {at}"))?;
            let next = get_u32(record, 0) as usize;
            let version = [get_u32(record, 4), get_u32(record, 8), get_u32(record, 12)];
            out.push((
                terminated(&record[VERSIONS_HEADER..], "target type")?,
                version,
            ));
            if next == 0 {
                return Ok(out);
            }
            at = at
                .checked_add(next)
                .ok_or_else(|| err!(DeviceError, "device-mapper target list offset overflows"))?;
        }
    }

    /// DM_TABLE_STATUS: the `target_count` table lines. Each spec's `next` counts from the first.
    pub fn target_lines(&self) -> Result<Vec<TargetLine>> {
        let data = self.data()?;
        let mut out = Vec::new();
        let mut at = 0usize;
        for i in 0..self.target_count() {
            let spec = data
                .get(at..)
                .filter(|s| s.len() >= SPEC_SIZE)
                .ok_or_else(|| err!(DeviceError, "device-mapper table target {i} truncated"))?;
            out.push(TargetLine {
                start: get_u64(spec, 0),
                length: get_u64(spec, 8),
                kind: terminated(&spec[24..SPEC_SIZE], "target type")?,
                params: terminated(&spec[SPEC_SIZE..], "target parameters")?,
            });
            at = get_u32(spec, 20) as usize;
        }
        Ok(out)
    }
}

/// DM_TABLE_LOAD's data: one `dm_target_spec` per line, each followed by its NUL-terminated
/// parameters padded to 8 bytes; `next` is the distance to the following spec.
pub fn encode_table(lines: &[TargetLine]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for line in lines {
        if line.kind.len() >= TYPE_NAME_LEN || line.kind.contains('\0') {
            return Err(err!(
                DeviceError,
                "bad device-mapper target type {:?}",
                line.kind
            ));
        }
        if line.params.contains('\0') {
            return Err(err!(
                DeviceError,
                "NUL in device-mapper parameters {:?}",
                line.params
            ));
        }
        let params_len = (line.params.len() + 1).next_multiple_of(8);
        let next = u32::try_from(SPEC_SIZE + params_len)
            .map_err(|_| err!(DeviceError, "device-mapper parameters too long"))?;
        out.extend_from_slice(&line.start.to_ne_bytes());
        out.extend_from_slice(&line.length.to_ne_bytes());
        out.extend_from_slice(&0i32.to_ne_bytes());
        out.extend_from_slice(&next.to_ne_bytes());
        let mut kind = [0u8; TYPE_NAME_LEN];
        kind[..line.kind.len()].copy_from_slice(line.kind.as_bytes());
        out.extend_from_slice(&kind);
        let mut params = vec![0u8; params_len];
        params[..line.params.len()].copy_from_slice(line.params.as_bytes());
        out.extend_from_slice(&params);
    }
    Ok(out)
}

fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn get_u32(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_ne_bytes)
}

fn get_u64(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_ne_bytes)
}

/// Copies `s` into a fixed NUL-terminated field, refusing what would not fit with its NUL.
fn put_str(field: &mut [u8], s: &str, what: &str) -> Result<()> {
    if s.len() >= field.len() || s.contains('\0') {
        return Err(err!(
            DeviceError,
            "{what} {s:?} does not fit device-mapper's {} bytes",
            field.len() - 1
        ));
    }
    field[..s.len()].copy_from_slice(s.as_bytes());
    Ok(())
}

/// A fixed field's string up to its first NUL (the kernel always terminates names).
fn c_str(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// A string that must end with a NUL inside `bytes`.
fn terminated(bytes: &[u8], what: &str) -> Result<String> {
    let end = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| err!(DeviceError, "device-mapper {what} without a terminator"))?;
    Ok(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn header_matches_the_kernel_layout() {
        assert_eq!(HEADER_SIZE, 312);
        assert_eq!(offset_of!(DmIoctl, data_size), OFF_DATA_SIZE);
        assert_eq!(offset_of!(DmIoctl, data_start), OFF_DATA_START);
        assert_eq!(offset_of!(DmIoctl, target_count), OFF_TARGET_COUNT);
        assert_eq!(offset_of!(DmIoctl, open_count), OFF_OPEN_COUNT);
        assert_eq!(offset_of!(DmIoctl, flags), OFF_FLAGS);
        assert_eq!(offset_of!(DmIoctl, dev), OFF_DEV);
        assert_eq!(offset_of!(DmIoctl, name), OFF_NAME);
        assert_eq!(offset_of!(DmIoctl, uuid), OFF_UUID);
        assert_eq!(offset_of!(DmIoctl, data), 305);
    }

    #[test]
    fn dev_numbers_round_trip_the_kernel_encoding() {
        // 253:0 is dm-0 on most systems; 259:65536 needs the high minor bits.
        assert_eq!(
            DevNum::decode(0xfd00),
            DevNum {
                major: 253,
                minor: 0
            }
        );
        assert_eq!(DevNum { major: 7, minor: 3 }.encode(), 0x0703);
        let big = DevNum {
            major: 4100,
            minor: 70_000,
        };
        assert_eq!(DevNum::decode(big.encode()), big);
        assert_eq!(big.to_string(), "4100:70000");
    }

    #[test]
    fn request_carries_version_sizes_name_and_data() {
        let req = Request::new("system_b", READONLY_FLAG, &[1, 2, 3], 0)
            .and_then(|r| r.with_uuid("abupdate-system_b"))
            .unwrap()
            .with_targets(2);
        let reply = Reply::from_words(&req.to_words());
        assert_eq!(req.bytes.len(), 320);
        assert_eq!(reply.version(), VERSION);
        assert_eq!(get_u32(&req.bytes, OFF_DATA_SIZE), 320);
        assert_eq!(get_u32(&req.bytes, OFF_DATA_START), 312);
        assert_eq!(reply.flags(), READONLY_FLAG);
        assert_eq!(reply.target_count(), 2);
        assert_eq!(reply.name(), "system_b");
        assert_eq!(reply.uuid(), "abupdate-system_b");
        assert_eq!(&req.bytes[312..315], &[1, 2, 3]);
        assert_eq!(reply.data().unwrap().len(), 8);
    }

    #[test]
    fn names_that_do_not_fit_are_refused() {
        assert!(Request::new(&"x".repeat(127), 0, &[], 0).is_ok());
        let e = Request::new(&"x".repeat(128), 0, &[], 0).unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::DeviceError);
        assert!(Request::new("a\0b", 0, &[], 0).is_err());
        let req = Request::new("a", 0, &[], 0).unwrap();
        assert!(req.with_uuid(&"u".repeat(129)).is_err());
    }

    #[test]
    fn table_encoding_pads_parameters_and_links_specs() {
        let lines = [
            TargetLine {
                start: 0,
                length: 2048,
                kind: "linear".into(),
                params: "7:0 4096".into(),
            },
            TargetLine {
                start: 2048,
                length: 8,
                kind: "zero".into(),
                params: String::new(),
            },
        ];
        let data = encode_table(&lines).unwrap();
        // "7:0 4096\0" is 9 bytes, padded to 16; "" is 1 byte, padded to 8.
        assert_eq!(data.len(), 40 + 16 + 40 + 8);
        assert_eq!(get_u64(&data, 0), 0);
        assert_eq!(get_u64(&data, 8), 2048);
        assert_eq!(get_u32(&data, 20), 56);
        assert_eq!(&data[24..31], b"linear\0");
        assert_eq!(&data[40..49], b"7:0 4096\0");
        assert_eq!(get_u64(&data, 56), 2048);
        assert_eq!(get_u32(&data, 56 + 20), 48);
        assert_eq!(&data[56 + 24..56 + 29], b"zero\0");

        let long_type = TargetLine {
            kind: "x".repeat(16),
            ..lines[1].clone()
        };
        assert!(encode_table(&[long_type]).is_err());
    }

    /// A reply as DM_TABLE_STATUS returns it: `next` counts from the first spec, unlike LOAD.
    #[test]
    fn table_status_reply_parses_and_rejects_truncation() {
        let mut data = Vec::new();
        for (start, kind, params) in [(0u64, "linear", "7:0 2048"), (16, "zero", "")] {
            let begin = data.len();
            data.extend_from_slice(&start.to_ne_bytes());
            data.extend_from_slice(&16u64.to_ne_bytes());
            data.extend_from_slice(&[0; 8]);
            let mut t = [0u8; 16];
            t[..kind.len()].copy_from_slice(kind.as_bytes());
            data.extend_from_slice(&t);
            data.extend_from_slice(params.as_bytes());
            data.push(0);
            data.resize(data.len().next_multiple_of(8), 0);
            let next = data.len() as u32;
            data[begin + 20..begin + 24].copy_from_slice(&next.to_ne_bytes());
        }
        let req = Request::new("s", 0, &data, 0).unwrap().with_targets(2);
        let lines = Reply::from_words(&req.to_words()).target_lines().unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[0].start, lines[0].length), (0, 16));
        assert_eq!(
            (lines[0].kind.as_str(), lines[0].params.as_str()),
            ("linear", "7:0 2048")
        );
        assert_eq!((lines[1].start, lines[1].kind.as_str()), (16, "zero"));

        // A count larger than the data holds, or a data_size past the buffer, is an error.
        let req = Request::new("s", 0, &data, 0).unwrap().with_targets(9);
        assert!(Reply::from_words(&req.to_words()).target_lines().is_err());
        let mut req = Request::new("s", 0, &data, 0).unwrap().with_targets(1);
        put_u32(&mut req.bytes, OFF_DATA_SIZE, 1 << 20);
        assert!(Reply::from_words(&req.to_words()).target_lines().is_err());
    }

    #[test]
    fn target_versions_reply_lists_each_type() {
        let mut data = Vec::new();
        let types = [
            ("linear", [1u32, 4, 0]),
            ("user", [1, 0, 0]),
            ("zero", [1, 1, 0]),
        ];
        for (i, (name, version)) in types.iter().enumerate() {
            let begin = data.len();
            data.extend_from_slice(&0u32.to_ne_bytes());
            for v in version {
                data.extend_from_slice(&v.to_ne_bytes());
            }
            data.extend_from_slice(name.as_bytes());
            data.push(0);
            data.resize(data.len().next_multiple_of(8), 0);
            if i + 1 < types.len() {
                let next = (data.len() - begin) as u32;
                data[begin..begin + 4].copy_from_slice(&next.to_ne_bytes());
            }
        }
        let req = Request::new("", 0, &data, 0).unwrap();
        let list = Reply::from_words(&req.to_words())
            .target_versions()
            .unwrap();
        let want: Vec<(String, [u32; 3])> =
            types.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        assert_eq!(list, want);

        // A `next` past the data, or no record at all, is an error.
        data[0..4].copy_from_slice(&4096u32.to_ne_bytes());
        let req = Request::new("", 0, &data, 0).unwrap();
        assert!(Reply::from_words(&req.to_words())
            .target_versions()
            .is_err());
        let empty = Request::new("", 0, &[], 0).unwrap();
        assert!(Reply::from_words(&empty.to_words())
            .target_versions()
            .is_err());
    }

    #[test]
    fn name_list_reply_parses_empty_and_full_lists() {
        let empty = Request::new("", 0, &[], 64).unwrap();
        assert!(Reply::from_words(&empty.to_words())
            .name_list()
            .unwrap()
            .is_empty());

        let mut data = Vec::new();
        for (i, (dev, name)) in [(0xfd00u64, "system_b"), (0xfd01, "vendor_b")]
            .iter()
            .enumerate()
        {
            let begin = data.len();
            data.extend_from_slice(&dev.to_ne_bytes());
            data.extend_from_slice(&0u32.to_ne_bytes());
            data.extend_from_slice(name.as_bytes());
            data.push(0);
            data.resize(data.len().next_multiple_of(8) + 8, 0);
            if i == 0 {
                let next = (data.len() - begin) as u32;
                data[begin + 8..begin + 12].copy_from_slice(&next.to_ne_bytes());
            }
        }
        let req = Request::new("", 0, &data, 0).unwrap();
        let list = Reply::from_words(&req.to_words()).name_list().unwrap();
        assert_eq!(
            list,
            vec![
                (
                    "system_b".to_owned(),
                    DevNum {
                        major: 253,
                        minor: 0
                    }
                ),
                (
                    "vendor_b".to_owned(),
                    DevNum {
                        major: 253,
                        minor: 1
                    }
                ),
            ]
        );

        // A name running off the end of the data has no terminator.
        let mut bad = data[..24].to_vec();
        bad[12..24].copy_from_slice(b"abcdefghijkl");
        let req = Request::new("", 0, &bad, 0).unwrap();
        assert!(Reply::from_words(&req.to_words()).name_list().is_err());
    }
}
