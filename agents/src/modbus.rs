//! The Modbus TCP client of a cabinet: reads the four measurements and the switch state, and
//! switches loads and the source, as laid out by a [`RegisterMap`].
//!
//! tokio-modbus has no timeouts, so every request here runs under one. A request that timed
//! out may still be answered later, and that late reply would be taken for the answer to the
//! next request; so after a timeout or a transport error the connection is marked broken and
//! refuses further use ([`ModbusError::needs_reconnect`]): the caller drops it and connects
//! again.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_modbus::client::{Client, Context};
use tokio_modbus::{Request, Response};

use crate::regmap::{
    DecodeError, Measurement, RegisterImage, RegisterMap, SwitchError, Switches, Table,
};

/// Why a Modbus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ModbusError {
    /// The TCP connection could not be established.
    #[error("cannot connect to Modbus server {addr}: {source}")]
    Connect {
        /// The server.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// No reply within the configured timeout.
    #[error("Modbus {operation} timed out after {after:?}")]
    Timeout {
        /// What was being done ("connect", "read measurements" ...).
        operation: &'static str,
        /// The timeout that expired.
        after: Duration,
    },
    /// The connection broke or the reply did not match the request.
    #[error("Modbus transport error during {operation}: {source}")]
    Transport {
        /// What was being done.
        operation: &'static str,
        /// The cause.
        source: tokio_modbus::Error,
    },
    /// The server answered with a Modbus exception.
    #[error("Modbus exception {code} ({name}) for function {function}", name = exception_name(*.code))]
    Exception {
        /// The request's function code.
        function: u8,
        /// The exception code (1 illegal function, 2 illegal data address, ...).
        code: u8,
    },
    /// The reply had the wrong shape, or a value was NaN/infinite.
    #[error("cannot decode Modbus reply: {0}")]
    Decode(#[from] DecodeError),
    /// A reply of the right function but unexpected contents (e.g. too few coils).
    #[error("unexpected Modbus reply to {operation}: {detail}")]
    UnexpectedReply {
        /// What was being done.
        operation: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The caller asked for a load or source the cabinet does not have.
    #[error(transparent)]
    Switch(#[from] SwitchError),
    /// An earlier timeout or transport error left this connection unusable.
    #[error("Modbus connection is broken by an earlier error; reconnect")]
    Broken,
}

impl ModbusError {
    /// True when the connection must be dropped and re-established before the next request.
    pub fn needs_reconnect(&self) -> bool {
        matches!(
            self,
            ModbusError::Connect { .. }
                | ModbusError::Timeout { .. }
                | ModbusError::Transport { .. }
                | ModbusError::Broken
        )
    }
}

fn exception_name(code: u8) -> &'static str {
    match code {
        1 => "illegal function",
        2 => "illegal data address",
        3 => "illegal data value",
        4 => "server device failure",
        5 => "acknowledge",
        6 => "server device busy",
        _ => "other",
    }
}

/// A connection to a cabinet's PLC (or the simulator).
pub struct ModbusCabinet {
    ctx: Context,
    addr: SocketAddr,
    map: RegisterMap,
    timeout: Duration,
    broken: bool,
}

impl std::fmt::Debug for ModbusCabinet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModbusCabinet")
            .field("addr", &self.addr)
            .field("timeout", &self.timeout)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl ModbusCabinet {
    /// Connects to `addr` within `timeout`; every later request also gets `timeout`.
    pub async fn connect(
        addr: SocketAddr,
        map: RegisterMap,
        timeout: Duration,
    ) -> Result<Self, ModbusError> {
        let ctx =
            match tokio::time::timeout(timeout, tokio_modbus::client::tcp::connect(addr)).await {
                Err(_) => {
                    return Err(ModbusError::Timeout {
                        operation: "connect",
                        after: timeout,
                    })
                }
                Ok(Err(source)) => return Err(ModbusError::Connect { addr, source }),
                Ok(Ok(ctx)) => ctx,
            };
        Ok(Self {
            ctx,
            addr,
            map,
            timeout,
            broken: false,
        })
    }

    /// The server this connection talks to.
    pub fn peer(&self) -> SocketAddr {
        self.addr
    }

    /// The register map in use.
    pub fn map(&self) -> &RegisterMap {
        &self.map
    }

    /// True after a timeout or transport error: drop this and reconnect.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Reads U, I, PA, PR: one request when the map's registers are contiguous.
    pub async fn read_measurement(&mut self) -> Result<Measurement, ModbusError> {
        let mut image = RegisterImage::new();
        for read in self.map.read_plan() {
            let request = match read.table {
                Table::Input => Request::ReadInputRegisters(read.address, read.count),
                Table::Holding => Request::ReadHoldingRegisters(read.address, read.count),
            };
            let words = match self.call("read measurements", request).await? {
                Response::ReadInputRegisters(w) | Response::ReadHoldingRegisters(w) => w,
                other => return Err(unexpected("read measurements", &other)),
            };
            if words.len() != usize::from(read.count) {
                return Err(ModbusError::UnexpectedReply {
                    operation: "read measurements",
                    detail: format!("asked for {} registers, got {}", read.count, words.len()),
                });
            }
            image.insert_slice(read.address, &words);
        }
        Ok(self.map.decode(&image)?)
    }

    /// Reads which loads are on and which source is selected.
    pub async fn read_switches(&mut self) -> Result<Switches, ModbusError> {
        let mut coils = std::collections::BTreeMap::new();
        for (address, count) in self.map.coil_plan() {
            let values = match self
                .call("read switches", Request::ReadCoils(address, count))
                .await?
            {
                Response::ReadCoils(v) => v,
                other => return Err(unexpected("read switches", &other)),
            };
            if values.len() < usize::from(count) {
                return Err(ModbusError::UnexpectedReply {
                    operation: "read switches",
                    detail: format!("asked for {count} coils, got {}", values.len()),
                });
            }
            coils.extend((address..).zip(values.into_iter().take(usize::from(count))));
        }
        self.map
            .switches_from_coils(|a| coils.get(&a).copied())
            .ok_or_else(|| ModbusError::UnexpectedReply {
                operation: "read switches",
                detail: "a mapped coil is missing from the replies".to_owned(),
            })
    }

    /// Switches load `load` (1..=7) on or off.
    pub async fn set_load(&mut self, load: usize, on: bool) -> Result<(), ModbusError> {
        let address = *load
            .checked_sub(1)
            .and_then(|k| self.map.coils().loads.get(k))
            .ok_or(SwitchError::NoSuchLoad(load))?;
        self.write_coil("switch load", address, on).await
    }

    /// Selects source 1 or 2.
    pub async fn set_source(&mut self, source: u8) -> Result<(), ModbusError> {
        let on = match source {
            1 => false,
            2 => true,
            other => return Err(SwitchError::NoSuchSource(other).into()),
        };
        let address = self.map.coils().source;
        self.write_coil("select source", address, on).await
    }

    async fn write_coil(
        &mut self,
        operation: &'static str,
        address: u16,
        on: bool,
    ) -> Result<(), ModbusError> {
        match self
            .call(operation, Request::WriteSingleCoil(address, on))
            .await?
        {
            Response::WriteSingleCoil(a, v) if a == address && v == on => Ok(()),
            other => Err(unexpected(operation, &other)),
        }
    }

    /// One request under the timeout; timeouts and transport errors break the connection.
    async fn call(
        &mut self,
        operation: &'static str,
        request: Request<'static>,
    ) -> Result<Response, ModbusError> {
        if self.broken {
            return Err(ModbusError::Broken);
        }
        let function = request.function_code().value();
        match tokio::time::timeout(self.timeout, self.ctx.call(request)).await {
            Err(_) => {
                self.broken = true;
                Err(ModbusError::Timeout {
                    operation,
                    after: self.timeout,
                })
            }
            Ok(Err(source)) => {
                self.broken = true;
                Err(ModbusError::Transport { operation, source })
            }
            Ok(Ok(Err(code))) => Err(ModbusError::Exception {
                function,
                code: code.into(),
            }),
            Ok(Ok(Ok(response))) => Ok(response),
        }
    }
}

fn unexpected(operation: &'static str, response: &Response) -> ModbusError {
    ModbusError::UnexpectedReply {
        operation,
        detail: format!("{response:?}"),
    }
}
