//! `NETWORK_ID`: the network an update is downloaded over.
//!
//! Settings passes `android.net.Network#getNetworkHandle()` so that OTA traffic goes over the
//! network it chose (a carrier may zero-rate it) rather than the default one. As update_engine
//! does, the whole process is bound, before the first connection: abupdated downloads one
//! payload at a time and opens no other connections, and a process binding also routes the DNS
//! lookups, which a socket binding would not. A request without `NETWORK_ID` clears an earlier
//! binding, so that one update's choice does not leak into the next.

use crate::error::Result;

/// Binds this process's new sockets and DNS lookups to the network `handle`, or back to the
/// default network with `None`.
pub fn bind_process(handle: Option<u64>) -> Result<()> {
    sys::set_process_network(handle)
}

#[cfg(target_os = "android")]
mod sys {
    use std::ffi::c_int;

    use crate::error::Result;

    /// `NETWORK_UNSPECIFIED` of `<android/multinetwork.h>`: no binding.
    const NETWORK_UNSPECIFIED: u64 = 0;

    extern "C" {
        // <android/multinetwork.h>; libandroid_net on the platform (Android.bp links it).
        fn android_setprocnetwork(network: u64) -> c_int;
    }

    pub fn set_process_network(handle: Option<u64>) -> Result<()> {
        let network = handle.unwrap_or(NETWORK_UNSPECIFIED);
        // SAFETY: the call takes an integer by value and touches no memory of ours; netd
        // validates the handle (EINVAL for one that is not a network handle).
        if unsafe { android_setprocnetwork(network) } == 0 {
            return Ok(());
        }
        let error = std::io::Error::last_os_error();
        match handle {
            Some(handle) => crate::bail!(
                DownloadFailed,
                "cannot bind to network NETWORK_ID={handle}: {error}"
            ),
            None => crate::bail!(
                DownloadFailed,
                "cannot go back to the default network: {error}"
            ),
        }
    }
}

#[cfg(not(target_os = "android"))]
mod sys {
    use crate::error::Result;

    /// Network handles are netd's: a host has none to bind to, and downloading over another
    /// network than the one asked for is what `NETWORK_ID` exists to prevent. update_engine's
    /// non-Android network selector refuses the same way.
    pub fn set_process_network(handle: Option<u64>) -> Result<()> {
        match handle {
            None => Ok(()),
            Some(handle) => crate::bail!(
                DownloadFailed,
                "NETWORK_ID={handle} names an Android network; this host has no netd to bind to it"
            ),
        }
    }
}

#[cfg(all(test, not(target_os = "android")))]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn a_host_refuses_a_network_and_accepts_the_default() {
        assert!(bind_process(None).is_ok());
        let error = bind_process(Some(432_902_426_637)).unwrap_err();
        assert_eq!(error.code, ErrorCode::DownloadFailed);
        assert!(error.message.contains("NETWORK_ID=432902426637"), "{error}");
    }
}
