//! rmqtt set up from a [`BrokerConfig`]: its context (session limit, no CPU busy check), the
//! retained-message and shared-subscription plugins, our hooks, and the listeners with the
//! tuning the pipeline needs.

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Duration;

use rmqtt::context::ServerContext;
use rmqtt::hook::Type;
use rmqtt::net::{Builder, Listener};
use rmqtt::server::MqttServer;

use crate::auth::Authenticator;
use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::hooks::{
    AccessHook, CountingHook, PublishHook, TakeoverHook, ACCESS_HOOKS, COUNTING_HOOKS,
    PUBLISH_HOOKS, PUBLISH_HOOK_PRIORITY,
};
use crate::stats::Counters;

/// The plugin names rmqtt registers its two plugins under (their crates' names).
const RETAINER: &str = "rmqtt-retainer";
const SHARED_SUBSCRIPTION: &str = "rmqtt-shared-subscription";

/// Listener keys: rmqtt panics on a duplicate key, and port 0 would make ports ambiguous.
const TCP_KEY: u16 = 1;
const TLS_KEY: u16 = 2;
const WS_KEY: u16 = 3;

/// The listeners, bound, with the addresses the OS gave them.
pub(crate) struct Bound {
    pub(crate) server: MqttServer,
    pub(crate) scx: ServerContext,
    pub(crate) local_addr: SocketAddr,
    pub(crate) tls_local_addr: Option<SocketAddr>,
    pub(crate) ws_local_addr: Option<SocketAddr>,
}

/// Builds the engine and binds every listener; nothing is accepted until the server runs.
pub(crate) async fn build(
    config: &BrokerConfig,
    auth: Option<Arc<Authenticator>>,
    counters: Arc<Counters>,
) -> Result<Bound, BrokerError> {
    let limits = &config.limits;
    // Retained messages never expire by age (`0s`): a retained status or head must stay until
    // it is replaced. rmqtt-retainer reads byte sizes as strings ("65536B").
    let retainer = format!(
        "max_retained_messages = {}\nmax_payload_size = \"{}B\"\nretained_message_ttl = \"0s\"\n",
        limits.max_retained_messages, limits.max_retained_payload
    );
    let scx = ServerContext::new()
        // rmqtt refuses CONNECTs while the machine's load average is high: on a machine
        // shared with the agents (and the benches) that refuses our own agents.
        .busy_check_enable(false)
        .mqtt_max_sessions(isize::try_from(config.max_connections).unwrap_or(isize::MAX))
        .plugins_config_map_add(RETAINER, retainer)
        .plugins_config_map_add(SHARED_SUBSCRIPTION, "strategy = \"round_robin\"\n")
        .build()
        .await;
    let plugin = |name: &'static str| {
        move |err: rmqtt::Error| BrokerError::Engine(format!("plugin {name}: {err:#}"))
    };
    rmqtt_retainer::register(&scx, true, true)
        .await
        .map_err(plugin(RETAINER))?;
    rmqtt_shared_subscription::register(&scx, true, true)
        .await
        .map_err(plugin(SHARED_SUBSCRIPTION))?;
    register_hooks(&scx, auth.clone(), counters).await;

    let authenticated = auth.is_some();
    let tcp = bind(listener(config, "tcp", config.listen, authenticated))?
        .tcp()
        .map_err(engine)?;
    let local_addr = bound_addr(&tcp, config.listen)?;
    let mut server = MqttServer::new(scx.clone()).listener_by_id(tcp, TCP_KEY);
    let mut tls_local_addr = None;
    if let Some(tls) = &config.tls {
        let builder = listener(config, "tls", tls.listen, authenticated)
            .tls_cert(Some(tls.cert.display().to_string()))
            .tls_key(Some(tls.key.display().to_string()));
        let bound = bind(builder)?.tls().map_err(|err| {
            BrokerError::Tls(format!(
                "{} / {}: {err:#}",
                tls.cert.display(),
                tls.key.display()
            ))
        })?;
        tls_local_addr = Some(bound_addr(&bound, tls.listen)?);
        server = server.listener_by_id(bound, TLS_KEY);
    }
    let mut ws_local_addr = None;
    if let Some(ws) = &config.ws {
        let bound = bind(listener(config, "ws", ws.listen, authenticated))?
            .ws()
            .map_err(engine)?;
        ws_local_addr = Some(bound_addr(&bound, ws.listen)?);
        server = server.listener_by_id(bound, WS_KEY);
    }
    Ok(Bound {
        server: server.build(),
        scx,
        local_addr,
        tls_local_addr,
        ws_local_addr,
    })
}

async fn register_hooks(
    scx: &ServerContext,
    auth: Option<Arc<Authenticator>>,
    counters: Arc<Counters>,
) {
    let register = scx.extends.hook_mgr().register();
    for typ in PUBLISH_HOOKS {
        register
            .add_priority(typ, PUBLISH_HOOK_PRIORITY, Box::new(PublishHook))
            .await;
    }
    if let Some(auth) = auth {
        for typ in ACCESS_HOOKS {
            let hook = AccessHook {
                auth: Arc::clone(&auth),
                scx: scx.clone(),
            };
            register.add(typ, Box::new(hook)).await;
        }
    } else {
        let hook = TakeoverHook { scx: scx.clone() };
        register.add(Type::ClientConnect, Box::new(hook)).await;
    }
    for typ in COUNTING_HOOKS {
        let hook = CountingHook {
            counters: Arc::clone(&counters),
        };
        register.add(typ, Box::new(hook)).await;
    }
    register.start().await;
}

/// One listener's settings: every limit from the config, and the tuning that matters.
fn listener(config: &BrokerConfig, name: &str, addr: SocketAddr, authenticated: bool) -> Builder {
    let limits = &config.limits;
    let inflight = NonZeroU16::new(limits.max_inflight).unwrap_or(NonZeroU16::MIN);
    Builder::new()
        .name(name)
        .laddr(addr)
        // Off by default in rmqtt: Nagle plus delayed ACKs add ~40 ms to small messages.
        .nodelay(true)
        // As std's TcpListener does: a restart may bind while old sockets are in TIME_WAIT.
        .reuseaddr(Some(true))
        .max_packet_size(u32::try_from(config.max_packet_size).unwrap_or(u32::MAX))
        .allow_anonymous(!authenticated)
        .handshake_timeout(config.connect_timeout)
        .max_inflight(inflight)
        .max_mqueue_len(limits.max_queued_messages)
        .max_clientid_len(limits.max_client_id_len)
        .max_subscriptions(limits.max_subscriptions)
        .max_topic_aliases(limits.max_topic_aliases)
        .session_expiry_interval(limits.session_expiry)
        .max_session_expiry_interval(limits.max_session_expiry)
        // Zero: a message without its own expiry never expires (rmqtt's default is 5 min).
        .message_expiry_interval(Duration::ZERO)
}

fn bind(builder: Builder) -> Result<Listener, BrokerError> {
    let addr = builder.laddr;
    builder.bind().map_err(|err| BrokerError::Bind {
        addr,
        source: match err.downcast::<std::io::Error>() {
            Ok(io) => io,
            Err(other) => std::io::Error::other(format!("{other:#}")),
        },
    })
}

fn bound_addr(listener: &Listener, addr: SocketAddr) -> Result<SocketAddr, BrokerError> {
    listener.local_addr().map_err(|err| BrokerError::Bind {
        addr,
        source: std::io::Error::other(format!("{err:#}")),
    })
}

fn engine(err: rmqtt::Error) -> BrokerError {
    BrokerError::Engine(format!("{err:#}"))
}
