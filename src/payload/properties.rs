//! `payload_properties.txt` and the header key/value pairs the client passes with a payload
//! (`FILE_HASH=…`, `FILE_SIZE=…`, `METADATA_HASH=…`, `METADATA_SIZE=…`, `SWITCH_SLOT_ON_REBOOT=0`…).

use base64::Engine as _;

use crate::error::Result;
use crate::{bail, err};

/// The facts the header pairs assert about a payload, checked as the payload arrives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PayloadProperties {
    /// `FILE_HASH`: SHA-256 of the whole payload.
    pub file_hash: Option<[u8; 32]>,
    /// `FILE_SIZE`: the payload's size in bytes.
    pub file_size: Option<u64>,
    /// `METADATA_HASH`: SHA-256 of the metadata (header and manifest).
    pub metadata_hash: Option<[u8; 32]>,
    /// `METADATA_SIZE`: size of the metadata in bytes.
    pub metadata_size: Option<u64>,
    /// `SWITCH_SLOT_ON_REBOOT=0` leaves the slot unswitched after a successful apply.
    pub switch_slot_on_reboot: bool,
    /// `RUN_POST_INSTALL=0` skips the postinstall programs.
    pub run_post_install: bool,
    /// `POWERWASH=1`: the caller asks for a data wipe after the update (recorded, not acted on).
    pub power_wash: bool,
    /// `USER_AGENT`: the HTTP `User-Agent` for the download.
    pub user_agent: Option<String>,
    /// `AUTHORIZATION`: the HTTP `Authorization` header for the download.
    pub authorization: Option<String>,
    /// `android.net.Network#getNetworkHandle()` of the network to download over.
    pub network_id: Option<u64>,
}

impl PayloadProperties {
    /// No properties: the slot switches and postinstall runs.
    pub fn new() -> Self {
        PayloadProperties {
            switch_slot_on_reboot: true,
            run_post_install: true,
            ..Default::default()
        }
    }

    /// Parses `KEY=VALUE` lines, as in `payload_properties.txt` (blank lines ignored).
    pub fn parse_text(text: &str) -> Result<Self> {
        let mut props = Self::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            props.set_pair(line)?;
        }
        Ok(props)
    }

    /// Applies one `KEY=VALUE` pair. Unknown keys are ignored, as update_engine does, so that
    /// newer generators' properties do not break older devices.
    pub fn set_pair(&mut self, pair: &str) -> Result<()> {
        let Some((key, value)) = pair.split_once('=') else {
            bail!(
                MalformedPayload,
                "header pair {} is not KEY=VALUE",
                crate::error::shown(pair)
            );
        };
        let value = value.trim();
        match key.trim() {
            "FILE_HASH" => self.file_hash = Some(decode_hash(key, value)?),
            "FILE_SIZE" => self.file_size = Some(decode_u64(key, value)?),
            "METADATA_HASH" => self.metadata_hash = Some(decode_hash(key, value)?),
            "METADATA_SIZE" => self.metadata_size = Some(decode_u64(key, value)?),
            "SWITCH_SLOT_ON_REBOOT" => self.switch_slot_on_reboot = value != "0",
            "RUN_POST_INSTALL" => self.run_post_install = value != "0",
            "POWERWASH" => self.power_wash = value == "1",
            "USER_AGENT" => self.user_agent = Some(value.to_owned()),
            "AUTHORIZATION" => self.authorization = Some(value.to_owned()),
            "NETWORK_ID" => self.network_id = Some(decode_u64(key, value)?),
            _ => {}
        }
        Ok(())
    }

    /// Renders the four integrity lines as AOSP's `payload_properties.txt` does.
    pub fn to_text(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut out = String::new();
        if let Some(h) = &self.file_hash {
            out += &format!("FILE_HASH={}\n", b64.encode(h));
        }
        if let Some(n) = self.file_size {
            out += &format!("FILE_SIZE={n}\n");
        }
        if let Some(h) = &self.metadata_hash {
            out += &format!("METADATA_HASH={}\n", b64.encode(h));
        }
        if let Some(n) = self.metadata_size {
            out += &format!("METADATA_SIZE={n}\n");
        }
        out
    }
}

fn decode_hash(key: &str, value: &str) -> Result<[u8; 32]> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|e| err!(MalformedPayload, "{key} is not base64: {e}"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| err!(MalformedPayload, "{key} is {} bytes, not 32", b.len()))
}

fn decode_u64(key: &str, value: &str) -> Result<u64> {
    value.parse().map_err(|_| {
        err!(
            MalformedPayload,
            "{key}={} is not a number",
            crate::error::shown(value)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_aosp_properties() {
        let text = "FILE_HASH=lURPCIkIAjtMOyB/EjQcl8zDzqtD6Ta3tJef6G/+z2k=\nFILE_SIZE=871903868\n\
                    METADATA_HASH=tBvj43QOB0Jn++JojcpVdbRLz0qdAuL+uTkSy7hokaw=\nMETADATA_SIZE=70604\n";
        let p = PayloadProperties::parse_text(text).unwrap();
        assert_eq!(p.file_size, Some(871903868));
        assert_eq!(p.metadata_size, Some(70604));
        assert_eq!(p.file_hash.unwrap()[0], 0x95);
        assert!(p.switch_slot_on_reboot);
        assert_eq!(p.to_text(), text);
    }

    #[test]
    fn rejects_bad_values() {
        let mut p = PayloadProperties::new();
        assert!(p.set_pair("FILE_SIZE=abc").is_err());
        assert!(p.set_pair("FILE_HASH=AAAA").is_err());
        assert!(p.set_pair("NOEQUALS").is_err());
        // update_engine parses it as the uint64 of Network#getNetworkHandle().
        assert!(p.set_pair("NETWORK_ID=wifi").is_err());
        p.set_pair("NETWORK_ID=432902426637").unwrap();
        assert_eq!(p.network_id, Some(432_902_426_637));
        p.set_pair("SWITCH_SLOT_ON_REBOOT=0").unwrap();
        assert!(!p.switch_slot_on_reboot);
        p.set_pair("SOMETHING_NEW=1").unwrap();
    }
}
