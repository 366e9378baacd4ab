//! The device key on Android: an X25519 key (KeyMint `EC` on `CURVE_25519`, purpose
//! `AGREE_KEY`) that the platform keystore (keystore2) generates once and keeps; only its public
//! key ever leaves it. Behind [`DeviceKey`], like the boot HAL behind `BootControl`.
//!
//! The key lives in abupdated's keystore2 SELinux namespace ([`NAMESPACE`], declared in
//! `sepolicy/keystore2_key_contexts`) under the alias [`ALIAS`]. Its public key is read from the
//! certificate keystore2 returns with the key (the SubjectPublicKeyInfo of RFC 8410); an
//! agreement is an `AGREE_KEY` operation whose `finish` takes the peer's SubjectPublicKeyInfo
//! (DER) and returns the 32-byte shared secret.
//!
//! Binder and the AIDL types come from [`binder_adapter`](crate::service::binder_adapter): on
//! Android the platform's crates (`keystore` feature), on a host rsbinder with the subset in
//! `platform_aidl/`, which the host tests serve with a stand-in keystore2.

use super::device_key::{DeviceKey, SPKI_PREFIX};
use crate::error::Result;
use crate::service::binder_adapter::keystore::keymint::{
    Algorithm::Algorithm, Digest::Digest, EcCurve::EcCurve, KeyParameter::KeyParameter,
    KeyParameterValue::KeyParameterValue, KeyPurpose::KeyPurpose, SecurityLevel::SecurityLevel,
    Tag::Tag,
};
use crate::service::binder_adapter::keystore::keystore2::{
    Domain::Domain, IKeystoreSecurityLevel::IKeystoreSecurityLevel,
    IKeystoreService::IKeystoreService, KeyDescriptor::KeyDescriptor, KeyMetadata::KeyMetadata,
    ResponseCode::ResponseCode,
};
use crate::service::binder_adapter::{self as binder, Failure, Session, Status, Strong, Transport};
use crate::{bail, err};

/// keystore2's service.
pub const SERVICE_NAME: &str = "android.system.keystore2.IKeystoreService/default";
/// abupdated's keystore2 SELinux namespace (`sepolicy/keystore2_key_contexts`).
pub const NAMESPACE: i64 = 30_400;
/// The device key's alias in that namespace.
pub const ALIAS: &str = "abupdate_device_key";
/// The certificate's validity: keystore2 asks for one; the key is used for agreement only, so
/// the widest range (RFC 5280's "no well-defined expiration", 9999-12-31) is right.
const NOT_AFTER_MS: i64 = 253_402_300_799_000;

/// The device key in the platform keystore.
pub struct KeystoreDeviceKey {
    level: Strong<dyn IKeystoreSecurityLevel>,
    key: KeyDescriptor,
    public: [u8; 32],
    /// The connection to keystore2 (on a host, the RPC session the proxies travel over).
    _session: Session<dyn IKeystoreService>,
}

/// A failed keystore2 call as a 20-class error: without the device key nothing encrypted can
/// be verified or decrypted.
fn failed(what: &str, status: Status) -> crate::error::Error {
    let why = match binder::failure(&status) {
        Failure::ServiceSpecific(code, message) => {
            let kind = if code < 0 {
                "KeyMint ErrorCode"
            } else {
                "keystore2 ResponseCode"
            };
            format!("{kind} {code}: {message}")
        }
        Failure::Security(message) => format!("refused: {message}"),
        Failure::DeadObject => "keystore2 is gone".to_owned(),
        Failure::Other(message) => message,
    };
    err!(VerificationFailed, "keystore2 {what} failed: {why}")
}

impl KeystoreDeviceKey {
    /// The device key, generated in the TEE (StrongBox is not asked: few implement curve 25519)
    /// the first time. keystore2 is [`SERVICE_NAME`] at `transport` (on Android always the
    /// platform's servicemanager).
    pub fn open(transport: &Transport) -> Result<Self> {
        let session =
            binder::connect_to::<dyn IKeystoreService>(transport, SERVICE_NAME).map_err(|e| {
                err!(
                    VerificationFailed,
                    "connecting to keystore2 ({SERVICE_NAME} at {transport}): {}",
                    e.message
                )
            })?;
        let service = &session.service;
        let key = KeyDescriptor {
            domain: Domain::SELINUX,
            nspace: NAMESPACE,
            alias: Some(ALIAS.to_owned()),
            blob: None,
        };
        let (level, metadata) = match service.getKeyEntry(&key) {
            Ok(entry) => {
                let Some(level) = entry.iSecurityLevel else {
                    bail!(
                        VerificationFailed,
                        "keystore2 gave {ALIAS} no security level"
                    );
                };
                (level, entry.metadata)
            }
            Err(status) if status.service_specific_error() == ResponseCode::KEY_NOT_FOUND.0 => {
                let level = service
                    .getSecurityLevel(SecurityLevel::TRUSTED_ENVIRONMENT)
                    .map_err(|s| failed("getSecurityLevel", s))?;
                let metadata = level
                    .generateKey(&key, None, &generation_parameters(), 0, &[])
                    .map_err(|s| failed("generateKey", s))?;
                log::info!("generated the device key {ALIAS} in keystore2");
                (level, metadata)
            }
            Err(status) => return Err(failed("getKeyEntry", status)),
        };
        let public = public_key(&metadata)?;
        // Operations name the key by what keystore2 answered (its key id), not the alias.
        Ok(KeystoreDeviceKey {
            level,
            key: metadata.key,
            public,
            _session: session,
        })
    }
}

fn parameter(tag: Tag, value: KeyParameterValue) -> KeyParameter {
    KeyParameter { tag, value }
}

fn generation_parameters() -> Vec<KeyParameter> {
    vec![
        parameter(Tag::ALGORITHM, KeyParameterValue::Algorithm(Algorithm::EC)),
        parameter(
            Tag::EC_CURVE,
            KeyParameterValue::EcCurve(EcCurve::CURVE_25519),
        ),
        parameter(
            Tag::PURPOSE,
            KeyParameterValue::KeyPurpose(KeyPurpose::AGREE_KEY),
        ),
        parameter(Tag::DIGEST, KeyParameterValue::Digest(Digest::NONE)),
        parameter(Tag::NO_AUTH_REQUIRED, KeyParameterValue::BoolValue(true)),
        parameter(Tag::CERTIFICATE_NOT_BEFORE, KeyParameterValue::DateTime(0)),
        parameter(
            Tag::CERTIFICATE_NOT_AFTER,
            KeyParameterValue::DateTime(NOT_AFTER_MS),
        ),
    ]
}

/// The raw public key in the key's certificate: the 32 bytes after the X25519
/// SubjectPublicKeyInfo prefix (its OID, 1.3.101.110, appears nowhere else in a certificate).
fn public_key(metadata: &KeyMetadata) -> Result<[u8; 32]> {
    let Some(cert) = &metadata.certificate else {
        bail!(
            VerificationFailed,
            "keystore2 returned {ALIAS} without a certificate"
        );
    };
    spki_key(cert).ok_or_else(|| {
        err!(
            VerificationFailed,
            "the certificate of {ALIAS} holds no X25519 public key"
        )
    })
}

/// The key after the first X25519 SubjectPublicKeyInfo prefix in `der`.
fn spki_key(der: &[u8]) -> Option<[u8; 32]> {
    let at = der
        .windows(SPKI_PREFIX.len())
        .position(|w| w == SPKI_PREFIX)?;
    let start = at.checked_add(SPKI_PREFIX.len())?;
    der.get(start..start.checked_add(32)?)?.try_into().ok()
}

impl DeviceKey for KeystoreDeviceKey {
    fn public_key(&self) -> [u8; 32] {
        self.public
    }

    fn agree(&self, peer: &[u8; 32]) -> Result<[u8; 32]> {
        let purpose = [parameter(
            Tag::PURPOSE,
            KeyParameterValue::KeyPurpose(KeyPurpose::AGREE_KEY),
        )];
        let response = self
            .level
            .createOperation(&self.key, &purpose, false)
            .map_err(|s| failed("createOperation(AGREE_KEY)", s))?;
        let Some(operation) = response.iOperation else {
            bail!(
                VerificationFailed,
                "keystore2 started no AGREE_KEY operation"
            );
        };
        let mut spki = SPKI_PREFIX.to_vec();
        spki.extend_from_slice(peer);
        let secret = operation
            .finish(Some(&spki), None)
            .map_err(|s| failed("finish(AGREE_KEY)", s))?;
        let secret = secret
            .as_deref()
            .and_then(|s| <[u8; 32]>::try_from(s).ok())
            .ok_or_else(|| {
                err!(
                    VerificationFailed,
                    "keystore2's X25519 agreement is not 32 bytes"
                )
            })?;
        // A low-order peer point gives an all-zero secret: refused, as the file key does.
        if secret == [0u8; 32] {
            bail!(
                VerificationFailed,
                "the ephemeral key in the key file is a low-order point"
            );
        }
        Ok(secret)
    }
}
