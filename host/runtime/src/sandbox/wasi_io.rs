//! `wasi:io` for policies: streams and pollables implemented without ever blocking.
//!
//! Hand-written because wasmtime-wasi's sync `wasi:io` wraps every operation, `drop`
//! included, in `in_tokio`, which calls `Handle::block_on` when a Tokio runtime is
//! current: that panics on the proxy's worker threads, i.e. on the request path. The price
//! is following wasmtime-wasi's host traits at each major release.
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::{DynPollable, StreamError};

/// `wasi:io/error`, whose host side needs only the resource table.
pub(super) struct ErrorIo;

impl HasData for ErrorIo {
    type Data<'a> = &'a mut ResourceTable;
}

/// `wasi:io` for policies, implemented without ever blocking: the only streams a policy
/// can reach are its log output (always ready) and an empty stdin.
pub(super) struct SyncIo;

impl HasData for SyncIo {
    type Data<'a> = Table<'a>;
}

/// The resource table, wrapped so that the WASI traits can be implemented for it here.
pub(super) struct Table<'a>(pub(super) &'a mut ResourceTable);

impl poll::Host for Table<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        // Nothing a policy can wait on ever becomes ready later (clocks are frozen, there
        // is no network), so report everything ready rather than hang.
        Ok((0..pollables.len() as u32).collect())
    }
}

impl poll::HostPollable for Table<'_> {
    fn ready(&mut self, _p: Resource<DynPollable>) -> wasmtime::Result<bool> {
        Ok(true)
    }
    fn block(&mut self, _p: Resource<DynPollable>) -> wasmtime::Result<()> {
        Ok(())
    }
    fn drop(&mut self, p: Resource<DynPollable>) -> wasmtime::Result<()> {
        self.0.delete(p)?;
        Ok(())
    }
}

type OutRes = Resource<wasmtime_wasi::p2::DynOutputStream>;
type InRes = Resource<wasmtime_wasi::p2::DynInputStream>;
type StreamResult<T> = Result<T, StreamError>;

impl streams::Host for Table<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        match err {
            StreamError::Closed => Ok(streams::StreamError::Closed),
            StreamError::LastOperationFailed(e) => {
                Ok(streams::StreamError::LastOperationFailed(self.0.push(e)?))
            }
            StreamError::Trap(e) => Err(e),
        }
    }
}

impl streams::HostOutputStream for Table<'_> {
    fn drop(&mut self, s: OutRes) -> wasmtime::Result<()> {
        self.0.delete(s)?;
        Ok(())
    }
    fn check_write(&mut self, s: OutRes) -> StreamResult<u64> {
        Ok(self.0.get_mut(&s)?.check_write()? as u64)
    }
    fn write(&mut self, s: OutRes, bytes: Vec<u8>) -> StreamResult<()> {
        self.0.get_mut(&s)?.write(bytes.into())
    }
    fn blocking_write_and_flush(&mut self, s: OutRes, bytes: Vec<u8>) -> StreamResult<()> {
        let stream = self.0.get_mut(&s)?;
        stream.write(bytes.into())?;
        stream.flush()
    }
    fn flush(&mut self, s: OutRes) -> StreamResult<()> {
        self.0.get_mut(&s)?.flush()
    }
    fn blocking_flush(&mut self, s: OutRes) -> StreamResult<()> {
        self.0.get_mut(&s)?.flush()
    }
    fn subscribe(&mut self, s: OutRes) -> wasmtime::Result<Resource<DynPollable>> {
        wasmtime_wasi::p2::subscribe(self.0, s)
    }
    fn write_zeroes(&mut self, s: OutRes, len: u64) -> StreamResult<()> {
        let len = usize::try_from(len).unwrap_or(usize::MAX).min(1 << 20);
        self.0.get_mut(&s)?.write(vec![0; len].into())
    }
    fn blocking_write_zeroes_and_flush(&mut self, s: OutRes, len: u64) -> StreamResult<()> {
        let len = usize::try_from(len).unwrap_or(usize::MAX).min(1 << 20);
        let stream = self.0.get_mut(&s)?;
        stream.write(vec![0; len].into())?;
        stream.flush()
    }
    fn splice(&mut self, _dst: OutRes, _src: InRes, _len: u64) -> StreamResult<u64> {
        Ok(0)
    }
    fn blocking_splice(&mut self, _dst: OutRes, _src: InRes, _len: u64) -> StreamResult<u64> {
        Ok(0)
    }
}

impl streams::HostInputStream for Table<'_> {
    fn drop(&mut self, s: InRes) -> wasmtime::Result<()> {
        self.0.delete(s)?;
        Ok(())
    }
    fn read(&mut self, _s: InRes, _len: u64) -> StreamResult<Vec<u8>> {
        Err(StreamError::Closed)
    }
    fn blocking_read(&mut self, _s: InRes, _len: u64) -> StreamResult<Vec<u8>> {
        Err(StreamError::Closed)
    }
    fn skip(&mut self, _s: InRes, _len: u64) -> StreamResult<u64> {
        Err(StreamError::Closed)
    }
    fn blocking_skip(&mut self, _s: InRes, _len: u64) -> StreamResult<u64> {
        Err(StreamError::Closed)
    }
    fn subscribe(&mut self, s: InRes) -> wasmtime::Result<Resource<DynPollable>> {
        wasmtime_wasi::p2::subscribe(self.0, s)
    }
}
