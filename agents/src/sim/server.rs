//! The simulator's Modbus TCP front: serves the coils and the measurement registers of the
//! map, recomputing the measurements on every read, and can be told to misbehave ([`Fault`]).
//!
//! Answers: mapped coils are readable and writable (functions 1, 5, 15); the measurement
//! table is readable (function 4 for input, 3 for holding registers) and read-only. Any
//! unmapped address in a request gives exception 2 (illegal data address), a quantity outside
//! Modbus limits exception 3, and every other function exception 1 (illegal function).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_modbus::server::tcp::Server;
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{run_churn, Fault, SimError, Simulator};
use crate::regmap::Table;

/// Most concurrent Modbus connections the simulator accepts; more are closed at once.
pub const MAX_CONNECTIONS: usize = 16;

/// Modbus limit on coils per read (function 1).
const MAX_READ_COILS: u16 = 2000;
/// Modbus limit on coils per write (function 15).
const MAX_WRITE_COILS: usize = 1968;
/// Modbus limit on registers per read (functions 3 and 4).
const MAX_READ_REGISTERS: u16 = 125;

impl Simulator {
    /// Serves Modbus TCP on `listener` (and runs churn if configured) until `shutdown` fires;
    /// open connections are closed on return.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), SimError> {
        let addr = listener.local_addr()?;
        info!(addr = %addr, "cabinet simulator serving Modbus TCP");
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let sim = self.clone();
        let on_connected = move |stream: TcpStream, peer: SocketAddr| {
            let permit = Arc::clone(&permits).try_acquire_owned();
            let sim = sim.clone();
            async move {
                let Ok(permit) = permit else {
                    warn!(peer = %peer, limit = MAX_CONNECTIONS, "refusing Modbus connection");
                    return Ok(None);
                };
                debug!(peer = %peer, "Modbus client connected");
                let close = Arc::new(AtomicBool::new(false));
                let service = SimService {
                    sim,
                    close: Arc::clone(&close),
                };
                let stream = FaultStream {
                    inner: stream,
                    close,
                    _permit: permit,
                };
                Ok(Some((service, stream)))
            }
        };
        let on_process_error =
            |err: io::Error| debug!(cause = %err, "Modbus connection ended with an error");

        let churn_stop = shutdown.child_token();
        let churn = self.shared.churn.map(|spec| {
            let mut sim = self.clone();
            let seed = self.shared.seed;
            let stop = churn_stop.clone();
            tokio::spawn(async move {
                if let Err(err) = run_churn(&mut sim, spec, seed, stop).await {
                    warn!(cause = %err, "churn stopped");
                }
            })
        });

        let server = Server::new(listener);
        let result = tokio::select! {
            res = server.serve(&on_connected, on_process_error) => res.map_err(SimError::Accept),
            () = shutdown.cancelled() => Ok(()),
        };
        churn_stop.cancel();
        if let Some(task) = churn {
            if let Err(err) = task.await {
                warn!(cause = %err, "churn task failed");
            }
        }
        info!(addr = %addr, "cabinet simulator stopped");
        result
    }

    /// Answers one request against the current state (faults aside).
    fn answer(&self, request: Request<'static>) -> Result<Response, ExceptionCode> {
        let map = &self.shared.map;
        match request {
            Request::ReadCoils(address, count) => {
                if count == 0 || count > MAX_READ_COILS {
                    return Err(ExceptionCode::IllegalDataValue);
                }
                let state = self.state();
                let coils = addresses(address, usize::from(count))?
                    .map(|a| coil_value(self, &state.switches, a))
                    .collect::<Result<Vec<bool>, _>>()?;
                Ok(Response::ReadCoils(coils))
            }
            Request::WriteSingleCoil(address, on) => {
                self.write_coils(address, &[on])?;
                Ok(Response::WriteSingleCoil(address, on))
            }
            Request::WriteMultipleCoils(address, values) => {
                if values.is_empty() || values.len() > MAX_WRITE_COILS {
                    return Err(ExceptionCode::IllegalDataValue);
                }
                self.write_coils(address, &values)?;
                // Bounded by MAX_WRITE_COILS above.
                Ok(Response::WriteMultipleCoils(address, values.len() as u16))
            }
            Request::ReadInputRegisters(address, count) if map.table() == Table::Input => self
                .read_registers(address, count)
                .map(Response::ReadInputRegisters),
            Request::ReadHoldingRegisters(address, count) if map.table() == Table::Holding => self
                .read_registers(address, count)
                .map(Response::ReadHoldingRegisters),
            // Measurements are read-only: the holding table exists but nothing in it is writable.
            Request::WriteSingleRegister(..)
            | Request::WriteMultipleRegisters(..)
            | Request::MaskWriteRegister(..)
                if map.table() == Table::Holding =>
            {
                Err(ExceptionCode::IllegalDataAddress)
            }
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }

    /// Sets coils `address..` to `values`, all or nothing.
    fn write_coils(&self, address: u16, values: &[bool]) -> Result<(), ExceptionCode> {
        let coils = self.shared.map.coils();
        let targets = addresses(address, values.len())?
            .map(|a| coil_target(coils, a).ok_or(ExceptionCode::IllegalDataAddress))
            .collect::<Result<Vec<_>, _>>()?;
        let mut state = self.state();
        for (target, &on) in targets.into_iter().zip(values) {
            match target {
                CoilTarget::Load(k) => state.switches.loads[k] = on,
                CoilTarget::Source => state.switches.source = if on { 2 } else { 1 },
            }
        }
        Ok(())
    }

    fn read_registers(&self, address: u16, count: u16) -> Result<Vec<u16>, ExceptionCode> {
        if count == 0 || count > MAX_READ_REGISTERS {
            return Err(ExceptionCode::IllegalDataValue);
        }
        let map = &self.shared.map;
        let wanted: Vec<u16> = addresses(address, usize::from(count))?.collect();
        if !wanted.iter().all(|&a| map.is_mapped_register(a)) {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let reading = self.measure();
        let image = map.encode(&reading).map_err(|err| {
            warn!(cause = %err, "measurement does not fit the register map");
            ExceptionCode::ServerDeviceFailure
        })?;
        wanted
            .into_iter()
            .map(|a| image.get(a).ok_or(ExceptionCode::ServerDeviceFailure))
            .collect()
    }
}

/// `count` addresses from `start`, or exception 2 if they run past 65535.
fn addresses(start: u16, count: usize) -> Result<impl Iterator<Item = u16>, ExceptionCode> {
    let end = usize::from(start) + count;
    if end > usize::from(u16::MAX) + 1 {
        return Err(ExceptionCode::IllegalDataAddress);
    }
    Ok((usize::from(start)..end).map(|a| a as u16))
}

#[derive(Clone, Copy)]
enum CoilTarget {
    Load(usize),
    Source,
}

fn coil_target(coils: &crate::regmap::CoilMap, address: u16) -> Option<CoilTarget> {
    if address == coils.source {
        return Some(CoilTarget::Source);
    }
    coils
        .loads
        .iter()
        .position(|&a| a == address)
        .map(CoilTarget::Load)
}

fn coil_value(
    sim: &Simulator,
    switches: &crate::regmap::Switches,
    address: u16,
) -> Result<bool, ExceptionCode> {
    match coil_target(sim.shared.map.coils(), address) {
        Some(CoilTarget::Load(k)) => Ok(switches.loads[k]),
        Some(CoilTarget::Source) => Ok(switches.source == 2),
        None => Err(ExceptionCode::IllegalDataAddress),
    }
}

/// The per-connection Modbus service.
struct SimService {
    sim: Simulator,
    /// Set to make this connection's transport report end-of-stream ([`Fault::Close`]).
    close: Arc<AtomicBool>,
}

impl Service for SimService {
    type Request = Request<'static>;
    // `None` sends no reply at all, which is how a stall is simulated.
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = std::future::Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, request: Self::Request) -> Self::Future {
        let result = match self.sim.fault() {
            Fault::None => self.sim.answer(request).map(Some),
            Fault::Exception(code) => Err(ExceptionCode::new(code)),
            Fault::Stall => Ok(None),
            Fault::Close => {
                self.close.store(true, Ordering::Release);
                Ok(None)
            }
        };
        std::future::ready(result)
    }
}

/// The TCP stream with a switch that makes reads end: tokio-modbus then drops the
/// connection, which is the only way to close it from inside a service.
struct FaultStream {
    inner: TcpStream,
    close: Arc<AtomicBool>,
    /// Held for the connection's lifetime to bound concurrent connections.
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for FaultStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.close.load(Ordering::Acquire) {
            // Filling nothing signals end of stream.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for FaultStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
