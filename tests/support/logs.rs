//! Capture of everything logged in the test process (every level, every crate), so tests can
//! assert that nothing secret was written. The subscriber is global because watchers log from
//! runtime worker threads; it is installed once and shared by the tests of a binary.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static CAPTURED: OnceLock<Buffer> = OnceLock::new();

/// Start capturing (idempotent). Another global subscriber installed first would make the
/// capture empty, so that is a test setup error.
pub fn capture() {
    CAPTURED.get_or_init(|| {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("no other global tracing subscriber in this test binary");
        buffer
    });
}

/// Everything captured so far.
pub fn text() -> String {
    CAPTURED
        .get()
        .map(|b| {
            String::from_utf8_lossy(&b.0.lock().unwrap_or_else(PoisonError::into_inner))
                .into_owned()
        })
        .unwrap_or_default()
}
