//! Locations and the file source; the HTTP source is tested against nginx in
//! `tests/download_http`.

use super::*;
use std::fs::File;
use std::io::{Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn code(result: io::Result<usize>) -> ErrorCode {
    let error = result.unwrap_err();
    error_of(&error)
        .map(|e| e.code)
        .unwrap_or_else(|| panic!("unstructured error {error}"))
}

fn read_all(stream: &mut PayloadStream) -> Vec<u8> {
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn locations() {
    let parse = |text| Location::parse(text);
    assert!(matches!(parse("https://h/p.bin"), Ok(Location::Http(u)) if u.tls));
    assert!(matches!(parse("HTTP://h/p.bin"), Ok(Location::Http(u)) if !u.tls));
    assert!(
        matches!(parse("file:///data/p.bin"), Ok(Location::File(p)) if p == Path::new("/data/p.bin"))
    );
    assert!(matches!(parse("file://localhost/p"), Ok(Location::File(p)) if p == Path::new("/p")));
    assert!(
        matches!(parse("relative/p.bin"), Ok(Location::File(p)) if p == Path::new("relative/p.bin"))
    );
    assert!(matches!(parse("fd://12"), Ok(Location::Fd(12))));
    for bad in [
        "",
        "fd://-1",
        "fd://+3",
        "fd://x",
        "file://relative",
        "ftp://h/p",
        "http://user@h/",
    ] {
        let e = parse(bad).err().unwrap_or_else(|| panic!("{bad} accepted"));
        assert_eq!(e.code, ErrorCode::DownloadFailed, "{bad}");
    }
}

/// A host cannot download over the Android network a request names; it refuses before it
/// connects rather than use the default network.
#[cfg(not(target_os = "android"))]
#[test]
fn a_network_id_is_refused_on_a_host_before_connecting() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    server.set_nonblocking(true).unwrap();
    let url = format!("http://{}/payload.bin", server.local_addr().unwrap());
    let opts = SourceOptions {
        network: Some(100),
        ..SourceOptions::default()
    };
    let error = open(&url, 0, None, 0, &opts).err().expect("opened");
    assert_eq!(error.code, ErrorCode::DownloadFailed, "{error}");
    assert!(error.message.contains("NETWORK_ID=100"), "{error}");
    let accepted = server.accept().map(|_| ()).unwrap_err();
    assert_eq!(accepted.kind(), io::ErrorKind::WouldBlock, "it connected");
    // The check above sees connections: a plain one is there to accept.
    let _client = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
    server.set_nonblocking(false).unwrap();
    server.accept().unwrap();
}

#[test]
fn property_headers() {
    assert_eq!(header_for_property("USER_AGENT"), Some("User-Agent"));
    assert_eq!(header_for_property("AUTHORIZATION"), Some("Authorization"));
    assert_eq!(header_for_property("FILE_HASH"), None);
}

#[test]
fn file_from_offsets() {
    let data = pattern(300_000);
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&data).unwrap();
    let path = file.path().to_str().unwrap().to_owned();
    let opts = SourceOptions::default();

    let mut whole = open(&path, 0, Some(300_000), 0, &opts).unwrap();
    assert_eq!(whole.total_size(), Some(300_000));
    assert_eq!(read_all(&mut whole), data);
    assert_eq!(whole.bytes_fetched(), 300_000);

    // A payload of 200 000 bytes stored at offset 1000, resumed at payload byte 70 000.
    let url = format!("file://{path}");
    let mut inner = open(&url, 1000, Some(200_000), 70_000, &opts).unwrap();
    assert_eq!(read_all(&mut inner), &data[71_000..201_000]);

    let mut unknown = open(&path, 5, None, 10, &opts).unwrap();
    assert_eq!(unknown.total_size(), Some(299_995));
    assert_eq!(read_all(&mut unknown), &data[15..]);

    let mut at_end = open(&path, 0, Some(300_000), 300_000, &opts).unwrap();
    assert_eq!(read_all(&mut at_end), b"");
}

#[test]
fn file_size_checks() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&pattern(1000)).unwrap();
    let path = file.path().to_str().unwrap();
    let opts = SourceOptions::default();
    for (base, size, start) in [
        (0, Some(999), 0),
        (0, Some(1001), 0),
        (10, Some(991), 0),
        (0, Some(10), 11),
        (1001, None, 0),
    ] {
        let e = open(path, base, size, start, &opts).err().unwrap();
        assert_eq!(
            e.code,
            ErrorCode::SizeMismatch,
            "{base} {size:?} {start}: {e}"
        );
    }
    let e = open("/nonexistent/payload.bin", 0, None, 0, &opts)
        .err()
        .unwrap();
    assert_eq!(e.code, ErrorCode::DownloadFailed);
}

#[test]
fn file_shrinking_underneath_is_detected() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&pattern(10_000)).unwrap();
    let opts = SourceOptions::default();
    let mut stream = open(file.path().to_str().unwrap(), 0, Some(10_000), 0, &opts).unwrap();
    let mut buf = [0u8; 4000];
    assert_eq!(stream.read(&mut buf).unwrap(), 4000);
    file.as_file().set_len(5000).unwrap();
    assert_eq!(stream.read(&mut buf).unwrap(), 1000);
    assert_eq!(code(stream.read(&mut buf)), ErrorCode::DownloadChanged);
    // The stream stays failed.
    assert_eq!(code(stream.read(&mut buf)), ErrorCode::DownloadChanged);
}

#[test]
fn inherited_descriptor_keeps_its_offset() {
    let data = pattern(50_000);
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&data).unwrap();
    let offset_before = file.stream_position().unwrap();
    let opts = SourceOptions::default();
    let mut stream = open(
        &format!("fd://{}", file.as_raw_fd()),
        100,
        Some(40_000),
        5,
        &opts,
    )
    .unwrap();
    assert_eq!(read_all(&mut stream), &data[105..40_100]);
    assert_eq!(file.stream_position().unwrap(), offset_before);
    drop(stream);
    // The source read a duplicate: the caller's descriptor is still open.
    assert_eq!(file.metadata().unwrap().len(), 50_000);
    let e = open("fd://987654", 0, None, 0, &opts).err().unwrap();
    assert_eq!(e.code, ErrorCode::DownloadFailed);
}

#[test]
fn pipe_is_read_in_order() {
    let data = pattern(200_000);
    let (reader, writer) = nix::unistd::pipe().unwrap();
    let (reader, mut writer) = (File::from(reader), File::from(writer));
    let feeder = {
        let data = data.clone();
        thread::spawn(move || writer.write_all(&data))
    };
    let opts = SourceOptions::default();
    let fd = reader.as_raw_fd();
    let mut stream = open(&format!("fd://{fd}"), 1000, None, 500, &opts).unwrap();
    drop(reader);
    assert_eq!(read_all(&mut stream), &data[1500..]);
    assert_eq!(stream.total_size(), Some(199_000));
    assert_eq!(stream.bytes_fetched(), 200_000);
    feeder.join().unwrap().unwrap();
}

#[test]
fn file_suspend_and_cancel() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&pattern(10_000)).unwrap();
    let opts = SourceOptions::default();
    let control = opts.control.clone();
    let mut stream = open(file.path().to_str().unwrap(), 0, None, 0, &opts).unwrap();
    control.suspend();
    // Set just before resuming: a read that returns with it unset did not wait.
    let resumed = Arc::new(AtomicBool::new(false));
    let steer = {
        let resumed = Arc::clone(&resumed);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            resumed.store(true, Ordering::SeqCst);
            control.resume();
            thread::sleep(Duration::from_millis(50));
            control.cancel();
        })
    };
    let mut buf = [0u8; 100];
    assert_eq!(stream.read(&mut buf).unwrap(), 100);
    assert!(
        resumed.load(Ordering::SeqCst),
        "read did not wait while suspended"
    );
    steer.join().unwrap();
    assert_eq!(code(stream.read(&mut buf)), ErrorCode::Cancelled);
}

/// Runs `f` on a thread; its result arrives on the receiver.
fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> mpsc::Receiver<T> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let _ = sender.send(f());
    });
    receiver
}

#[test]
fn paths_must_be_regular_files_or_block_devices() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("payload.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    // Nobody writes to the FIFO: a plain open would wait for a writer forever.
    for location in [
        format!("file://{}", fifo.display()),
        fifo.display().to_string(),
        "/dev/null".to_owned(),
        dir.path().display().to_string(),
    ] {
        let shown = location.clone();
        let result = spawn(move || open(&location, 0, None, 0, &SourceOptions::default()).err());
        let e = result
            .recv_timeout(Duration::from_secs(10))
            .ok()
            .unwrap_or_else(|| panic!("opening {shown} blocked"))
            .unwrap_or_else(|| panic!("{shown} was accepted"));
        assert_eq!(e.code, ErrorCode::DownloadFailed, "{shown}: {e}");
        assert!(e.message.contains("regular file or a block device"), "{e}");
    }
    // A descriptor of a character device is no payload either.
    let null = File::open("/dev/null").unwrap();
    let e = open(
        &format!("fd://{}", null.as_raw_fd()),
        0,
        None,
        0,
        &SourceOptions::default(),
    )
    .err()
    .unwrap();
    assert_eq!(e.code, ErrorCode::DownloadFailed, "{e}");
}

/// A pipe whose writer stays open and silent: reading it and skipping to the start both wait
/// for bytes that never come, and a cancel must end the wait.
#[test]
fn silent_stream_honours_cancel() {
    for (base, start) in [(0, 0), (100, 0), (0, 7)] {
        let (reader, writer) = nix::unistd::pipe().unwrap();
        let reader = File::from(reader);
        let opts = SourceOptions::default();
        let control = opts.control.clone();
        let fd = reader.as_raw_fd();
        let result = spawn(move || {
            let mut stream =
                open(&format!("fd://{fd}"), base, None, start, &opts).map_err(|e| Some(e.code))?;
            let mut buf = [0u8; 16];
            stream
                .read(&mut buf)
                .map_err(|e| error_of(&e).map(|e| e.code))
        });
        thread::sleep(Duration::from_millis(300));
        let cancelled_at = std::time::Instant::now();
        control.cancel();
        let e = result
            .recv_timeout(Duration::from_secs(10))
            .ok()
            .unwrap_or_else(|| panic!("base {base} start {start}: the read ignored the cancel"))
            .unwrap_err();
        assert!(cancelled_at.elapsed() < Duration::from_secs(5));
        assert_eq!(e, Some(ErrorCode::Cancelled));
        drop((reader, writer));
    }
}
