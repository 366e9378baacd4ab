//! A stand-in for Android's keystore2, for the host tests of the keystore device key
//! (`src/feed/keystore_key.rs`). A host has no keystore2: this serves the same AIDL
//! (`platform_aidl/`, `android.system.keystore2.IKeystoreService/default`) over real RPC Binder
//! (rsbinder on a unix socket) with the subset of keystore2's behaviour the adapter relies on:
//!
//! - keys live in the SELinux domain only (namespace 30400, as `keystore2_key_contexts` gives
//!   abupdated); another domain or namespace is PERMISSION_DENIED, an unknown alias
//!   KEY_NOT_FOUND;
//! - `generateKey` checks KeyMint's parameters for an X25519 agreement key (ALGORITHM EC,
//!   EC_CURVE CURVE_25519, PURPOSE AGREE_KEY, DIGEST NONE, both certificate dates), makes a real
//!   X25519 key and keeps its private half; the answer names the key by KEY_ID and carries an
//!   X.509 certificate (openssl) holding only the public key, as keystore2's does;
//! - `createOperation` wants PURPOSE AGREE_KEY (INCOMPATIBLE_PURPOSE otherwise), and the
//!   operation's `finish` takes the peer's SubjectPublicKeyInfo and returns the X25519 secret,
//!   once;
//! - nothing returns or takes key material: import, wrapped import and storage-key conversion
//!   are refused, so the private key never crosses Binder.
//!
//! [`Fault`] makes one call fail with a chosen code, for the error paths.

// Each test binary uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use abupdate::feed::keystore_key::{NAMESPACE, SERVICE_NAME};
use abupdate::service::binder_adapter::keystore::keymint::{
    Algorithm::Algorithm, Digest::Digest, EcCurve::EcCurve, KeyParameter::KeyParameter,
    KeyParameterValue::KeyParameterValue, KeyPurpose::KeyPurpose, SecurityLevel::SecurityLevel,
    Tag::Tag,
};
use abupdate::service::binder_adapter::keystore::keystore2::{
    AuthenticatorSpec::AuthenticatorSpec,
    Authorization::Authorization,
    CreateOperationResponse::CreateOperationResponse,
    Domain::Domain,
    EphemeralStorageKeyResponse::EphemeralStorageKeyResponse,
    IKeystoreOperation::{BnKeystoreOperation, IKeystoreOperation},
    IKeystoreSecurityLevel::{BnKeystoreSecurityLevel, IKeystoreSecurityLevel},
    IKeystoreService::{BnKeystoreService, IKeystoreService},
    KeyDescriptor::KeyDescriptor,
    KeyEntryResponse::KeyEntryResponse,
    KeyMetadata::KeyMetadata,
    ResponseCode::ResponseCode,
};
use abupdate::service::binder_adapter::{
    self as binder, service_specific_status, BinderResult, Interface, Served, Status, Strong,
    Transport,
};

/// KeyMint `ErrorCode`s the stand-in answers with (negative, passed through by keystore2).
pub const INCOMPATIBLE_PURPOSE: i32 = -3;
/// KeyMint `ErrorCode.INVALID_OPERATION_HANDLE`.
pub const INVALID_OPERATION_HANDLE: i32 = -28;
/// KeyMint `ErrorCode.INVALID_ARGUMENT`.
pub const INVALID_ARGUMENT: i32 = -38;
/// KeyMint `ErrorCode.UNIMPLEMENTED`.
pub const UNIMPLEMENTED: i32 = -100;

/// One call made to fail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Everything works.
    #[default]
    None,
    /// `getKeyEntry` answers this service-specific code.
    GetKeyEntry(i32),
    /// `generateKey` answers this code.
    GenerateKey(i32),
    /// `createOperation` answers this code.
    CreateOperation(i32),
    /// `finish` returns 31 bytes.
    ShortSecret,
    /// The certificate holds no X25519 key.
    NoPublicKey,
}

/// A key the stand-in keeps.
pub struct Stored {
    /// keystore2's key id (`Domain::KEY_ID`).
    pub id: i64,
    /// The X25519 private key: never leaves the stand-in over Binder.
    pub secret: [u8; 32],
    /// Its public key.
    pub public: [u8; 32],
    /// The certificate returned with the key (DER).
    pub certificate: Vec<u8>,
    /// The parameters it was generated with.
    pub parameters: Vec<KeyParameter>,
}

/// What the stand-in holds and has seen.
#[derive(Default)]
pub struct State {
    /// Keys by alias (all in [`NAMESPACE`]).
    pub keys: BTreeMap<String, Stored>,
    /// `generateKey` calls that made a key.
    pub generated: u32,
    /// Operations finished.
    pub agreements: u32,
    /// The call made to fail.
    pub fault: Fault,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn refuse(code: i32, message: &str) -> Status {
    service_specific_status(code, message)
}

/// A running stand-in keystore2.
pub struct Keystore2 {
    /// Its state, for the tests to inspect and to set faults.
    pub state: Shared,
    /// Where it serves (`unix://...?profile=android13plus`).
    pub uri: String,
    served: Option<Served>,
    _dir: tempfile::TempDir,
}

impl Keystore2 {
    /// Serves a new, empty keystore2 on a unix socket in a temporary directory.
    pub fn start() -> Keystore2 {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!(
            "unix://{}?profile=android13plus",
            dir.path().join("keystore2.sock").display()
        );
        let state = Shared::default();
        let level = BnKeystoreSecurityLevel::new_binder(Level {
            state: state.clone(),
        });
        let service = BnKeystoreService::new_binder(Service {
            state: state.clone(),
            level,
        });
        let served = binder::serve_all(
            &Transport::parse(&uri).unwrap(),
            vec![(SERVICE_NAME.to_owned(), service.as_binder())],
            2,
        )
        .unwrap();
        Keystore2 {
            state,
            uri,
            served: Some(served),
            _dir: dir,
        }
    }

    /// The transport the adapter connects over.
    pub fn transport(&self) -> Transport {
        Transport::parse(&self.uri).unwrap()
    }

    /// The state, locked.
    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Makes `fault` happen from now on.
    pub fn set_fault(&self, fault: Fault) {
        self.state().fault = fault;
    }
}

impl Drop for Keystore2 {
    fn drop(&mut self) {
        if let Some(served) = self.served.take() {
            served.stop();
        }
    }
}

/// The alias of `key` if it names one in abupdated's namespace, else PERMISSION_DENIED (what
/// keystore2's SELinux check answers for a namespace the caller may not use).
fn selinux_alias(key: &KeyDescriptor) -> BinderResult<String> {
    if key.domain != Domain::SELINUX || key.nspace != NAMESPACE {
        return Err(refuse(
            ResponseCode::PERMISSION_DENIED.0,
            &format!("domain {:?} namespace {}", key.domain, key.nspace),
        ));
    }
    key.alias
        .clone()
        .ok_or_else(|| refuse(ResponseCode::INVALID_ARGUMENT.0, "no alias"))
}

fn metadata(stored: &Stored) -> KeyMetadata {
    KeyMetadata {
        key: KeyDescriptor {
            domain: Domain::KEY_ID,
            nspace: stored.id,
            alias: None,
            blob: None,
        },
        keySecurityLevel: SecurityLevel::TRUSTED_ENVIRONMENT,
        authorizations: stored
            .parameters
            .iter()
            .map(|p| Authorization {
                securityLevel: SecurityLevel::TRUSTED_ENVIRONMENT,
                keyParameter: p.clone(),
            })
            .collect(),
        certificate: Some(stored.certificate.clone()),
        certificateChain: None,
        modificationTimeMs: 0,
    }
}

struct Service {
    state: Shared,
    level: Strong<dyn IKeystoreSecurityLevel>,
}

impl Interface for Service {}

impl IKeystoreService for Service {
    fn getSecurityLevel(
        &self,
        level: SecurityLevel,
    ) -> BinderResult<Strong<dyn IKeystoreSecurityLevel>> {
        if level != SecurityLevel::TRUSTED_ENVIRONMENT {
            // keystore2's answer for a level the device lacks (KeyMint HARDWARE_TYPE_UNAVAILABLE).
            return Err(refuse(-68, "only the TEE here"));
        }
        Ok(self.level.clone())
    }

    fn getKeyEntry(&self, key: &KeyDescriptor) -> BinderResult<KeyEntryResponse> {
        let alias = selinux_alias(key)?;
        let state = lock(&self.state);
        if let Fault::GetKeyEntry(code) = state.fault {
            return Err(refuse(code, "injected"));
        }
        let Some(stored) = state.keys.get(&alias) else {
            return Err(refuse(ResponseCode::KEY_NOT_FOUND.0, &alias));
        };
        Ok(KeyEntryResponse {
            iSecurityLevel: Some(self.level.clone()),
            metadata: metadata(stored),
        })
    }

    fn updateSubcomponent(
        &self,
        _key: &KeyDescriptor,
        _public_cert: Option<&[u8]>,
        _certificate_chain: Option<&[u8]>,
    ) -> BinderResult<()> {
        Err(refuse(UNIMPLEMENTED, "updateSubcomponent"))
    }

    fn listEntries(&self, _domain: Domain, _nspace: i64) -> BinderResult<Vec<KeyDescriptor>> {
        Err(refuse(UNIMPLEMENTED, "listEntries"))
    }

    fn deleteKey(&self, key: &KeyDescriptor) -> BinderResult<()> {
        let alias = selinux_alias(key)?;
        match lock(&self.state).keys.remove(&alias) {
            Some(_) => Ok(()),
            None => Err(refuse(ResponseCode::KEY_NOT_FOUND.0, &alias)),
        }
    }

    fn grant(
        &self,
        _key: &KeyDescriptor,
        _grantee_uid: i32,
        _access_vector: i32,
    ) -> BinderResult<KeyDescriptor> {
        Err(refuse(UNIMPLEMENTED, "grant"))
    }

    fn ungrant(&self, _key: &KeyDescriptor, _grantee_uid: i32) -> BinderResult<()> {
        Err(refuse(UNIMPLEMENTED, "ungrant"))
    }

    fn getNumberOfEntries(&self, _domain: Domain, _nspace: i64) -> BinderResult<i32> {
        Err(refuse(UNIMPLEMENTED, "getNumberOfEntries"))
    }

    fn listEntriesBatched(
        &self,
        _domain: Domain,
        _nspace: i64,
        _starting_past_alias: Option<&str>,
    ) -> BinderResult<Vec<KeyDescriptor>> {
        Err(refuse(UNIMPLEMENTED, "listEntriesBatched"))
    }
}

struct Level {
    state: Shared,
}

impl Interface for Level {}

/// The one value of `tag` among `params` (INVALID_ARGUMENT when missing or repeated).
fn one(params: &[KeyParameter], tag: Tag) -> BinderResult<&KeyParameterValue> {
    let mut found = params.iter().filter(|p| p.tag == tag).map(|p| &p.value);
    match (found.next(), found.next()) {
        (Some(value), None) => Ok(value),
        _ => Err(refuse(
            INVALID_ARGUMENT,
            &format!("{tag:?} missing or repeated"),
        )),
    }
}

/// Checks the parameters of an X25519 agreement key; the certificate's end (ms).
fn check_generation(params: &[KeyParameter]) -> BinderResult<i64> {
    let expect = |tag: Tag, want: KeyParameterValue| -> BinderResult<()> {
        let got = one(params, tag)?;
        if *got != want {
            return Err(refuse(
                INVALID_ARGUMENT,
                &format!("{tag:?} is {got:?}, not {want:?}"),
            ));
        }
        Ok(())
    };
    expect(Tag::ALGORITHM, KeyParameterValue::Algorithm(Algorithm::EC))?;
    expect(
        Tag::EC_CURVE,
        KeyParameterValue::EcCurve(EcCurve::CURVE_25519),
    )?;
    expect(
        Tag::PURPOSE,
        KeyParameterValue::KeyPurpose(KeyPurpose::AGREE_KEY),
    )?;
    expect(Tag::DIGEST, KeyParameterValue::Digest(Digest::NONE))?;
    expect(Tag::NO_AUTH_REQUIRED, KeyParameterValue::BoolValue(true))?;
    let KeyParameterValue::DateTime(_) = one(params, Tag::CERTIFICATE_NOT_BEFORE)? else {
        return Err(refuse(
            INVALID_ARGUMENT,
            "CERTIFICATE_NOT_BEFORE not a date",
        ));
    };
    let KeyParameterValue::DateTime(not_after) = one(params, Tag::CERTIFICATE_NOT_AFTER)? else {
        return Err(refuse(INVALID_ARGUMENT, "CERTIFICATE_NOT_AFTER not a date"));
    };
    Ok(*not_after)
}

/// An X.509 certificate for the X25519 `public` key, valid until `not_after_ms`. X25519 cannot
/// sign, so a throwaway P-256 key signs it (on a device KeyMint's attestation key does).
fn certificate(public: &[u8; 32], not_after_ms: i64) -> Vec<u8> {
    use openssl::asn1::Asn1Time;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::{Id, PKey};
    use openssl::x509::{X509Builder, X509NameBuilder};

    let key = PKey::public_key_from_raw_bytes(public, Id::X25519).unwrap();
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let signer = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "Android Keystore Key")
        .unwrap();
    let name = name.build();
    let mut cert = X509Builder::new().unwrap();
    cert.set_version(2).unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(&name).unwrap();
    cert.set_pubkey(&key).unwrap();
    cert.set_not_before(&Asn1Time::from_unix(0).unwrap())
        .unwrap();
    cert.set_not_after(&Asn1Time::from_unix(not_after_ms / 1000).unwrap())
        .unwrap();
    cert.sign(&signer, MessageDigest::sha256()).unwrap();
    cert.build().to_der().unwrap()
}

fn random32() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).unwrap();
    bytes
}

impl IKeystoreSecurityLevel for Level {
    fn createOperation(
        &self,
        key: &KeyDescriptor,
        params: &[KeyParameter],
        _forced: bool,
    ) -> BinderResult<CreateOperationResponse> {
        let state = lock(&self.state);
        if let Fault::CreateOperation(code) = state.fault {
            return Err(refuse(code, "injected"));
        }
        // Operations name the key as generateKey/getKeyEntry answered: by KEY_ID.
        let stored = match key.domain {
            Domain::KEY_ID => state.keys.values().find(|k| k.id == key.nspace),
            _ => state.keys.get(&selinux_alias(key)?),
        };
        let Some(stored) = stored else {
            return Err(refuse(ResponseCode::KEY_NOT_FOUND.0, "no such key"));
        };
        if *one(params, Tag::PURPOSE)? != KeyParameterValue::KeyPurpose(KeyPurpose::AGREE_KEY) {
            return Err(refuse(INCOMPATIBLE_PURPOSE, "an AGREE_KEY key"));
        }
        let operation = BnKeystoreOperation::new_binder(Agreement {
            state: self.state.clone(),
            secret: Mutex::new(Some(stored.secret)),
        });
        Ok(CreateOperationResponse {
            iOperation: Some(operation),
            operationChallenge: None,
            parameters: None,
            upgradedBlob: None,
        })
    }

    fn generateKey(
        &self,
        key: &KeyDescriptor,
        attestation_key: Option<&KeyDescriptor>,
        params: &[KeyParameter],
        _flags: i32,
        _entropy: &[u8],
    ) -> BinderResult<KeyMetadata> {
        let alias = selinux_alias(key)?;
        let mut state = lock(&self.state);
        if let Fault::GenerateKey(code) = state.fault {
            return Err(refuse(code, "injected"));
        }
        if attestation_key.is_some() {
            return Err(refuse(INVALID_ARGUMENT, "no attestation here"));
        }
        let not_after = check_generation(params)?;
        let secret = random32();
        let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(secret));
        let certificate = if state.fault == Fault::NoPublicKey {
            vec![0x30, 0x00]
        } else {
            certificate(public.as_bytes(), not_after)
        };
        state.generated += 1;
        let stored = Stored {
            id: 1000 + i64::from(state.generated),
            secret,
            public: public.to_bytes(),
            certificate,
            parameters: params.to_vec(),
        };
        let answer = metadata(&stored);
        // Generating under an alias in use replaces the key, as keystore2 does.
        state.keys.insert(alias, stored);
        Ok(answer)
    }

    fn importKey(
        &self,
        _key: &KeyDescriptor,
        _attestation_key: Option<&KeyDescriptor>,
        _params: &[KeyParameter],
        _flags: i32,
        _key_data: &[u8],
    ) -> BinderResult<KeyMetadata> {
        Err(refuse(UNIMPLEMENTED, "importKey: keys are generated here"))
    }

    fn importWrappedKey(
        &self,
        _key: &KeyDescriptor,
        _wrapping_key: &KeyDescriptor,
        _masking_key: Option<&[u8]>,
        _params: &[KeyParameter],
        _authenticators: &[AuthenticatorSpec],
    ) -> BinderResult<KeyMetadata> {
        Err(refuse(UNIMPLEMENTED, "importWrappedKey"))
    }

    fn convertStorageKeyToEphemeral(
        &self,
        _storage_key: &KeyDescriptor,
    ) -> BinderResult<EphemeralStorageKeyResponse> {
        // The only call that hands out key material: not for these keys.
        Err(refuse(INCOMPATIBLE_PURPOSE, "not a storage key"))
    }

    fn deleteKey(&self, _key: &KeyDescriptor) -> BinderResult<()> {
        Err(refuse(UNIMPLEMENTED, "deleteKey (BLOB domain)"))
    }
}

/// An AGREE_KEY operation: `finish` once.
struct Agreement {
    state: Shared,
    secret: Mutex<Option<[u8; 32]>>,
}

impl Interface for Agreement {}

/// The X25519 SubjectPublicKeyInfo prefix (RFC 8410).
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00,
];

impl IKeystoreOperation for Agreement {
    fn updateAad(&self, _aad: &[u8]) -> BinderResult<()> {
        Err(refuse(INCOMPATIBLE_PURPOSE, "updateAad on an agreement"))
    }

    fn update(&self, _input: &[u8]) -> BinderResult<Option<Vec<u8>>> {
        Err(refuse(INCOMPATIBLE_PURPOSE, "update on an agreement"))
    }

    fn finish(
        &self,
        input: Option<&[u8]>,
        signature: Option<&[u8]>,
    ) -> BinderResult<Option<Vec<u8>>> {
        let Some(secret) = self
            .secret
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return Err(refuse(INVALID_OPERATION_HANDLE, "finished already"));
        };
        if signature.is_some() {
            return Err(refuse(INVALID_ARGUMENT, "a signature for an agreement"));
        }
        let peer: [u8; 32] = input
            .and_then(|spki| spki.strip_prefix(&SPKI_PREFIX[..]))
            .and_then(|raw| raw.try_into().ok())
            .ok_or_else(|| refuse(INVALID_ARGUMENT, "peer key is not an X25519 SPKI"))?;
        let shared = x25519_dalek::StaticSecret::from(secret)
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer));
        let mut state = lock(&self.state);
        state.agreements += 1;
        let mut out = shared.as_bytes().to_vec();
        if state.fault == Fault::ShortSecret {
            out.pop();
        }
        Ok(Some(out))
    }

    fn abort(&self) -> BinderResult<()> {
        self.secret
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        Ok(())
    }
}
